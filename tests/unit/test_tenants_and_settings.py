"""The tenants file and the settings: one clear ConfigError for every mistake."""

from __future__ import annotations

import pytest

from contracts import ConfigError, MessageType, parse_tenants
from prik.settings import load_settings

GOOD = """
[[tenant]]
id = "kommune-0101"
role = "producer"
may_send = ["dk.prik.task.request.v1"]

[[tenant]]
id = "lps-xmo"
role = "lps"
"""


def test_roles_decide_what_a_tenant_may_send() -> None:
    tenants = parse_tenants(GOOD)
    kommune, lps = tenants.get("kommune-0101"), tenants.get("lps-xmo")
    assert kommune is not None
    assert lps is not None
    assert kommune.allowed(MessageType.TASK_REQUEST)
    assert not kommune.allowed(MessageType.VIDEO_QUEUE)
    assert not kommune.allowed(MessageType.RECEIPT)
    assert lps.allowed(MessageType.RECEIPT)
    assert lps.allowed(MessageType.TASK_STATUS)
    assert not lps.allowed(MessageType.TASK_REQUEST)
    assert tenants.lps_ids == ("lps-xmo",)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[tenant]]\nid = "router"\nrole = "lps"\n', "reserved"),
        ('[[tenant]]\nid = "a-b"\nrole = "lps"\n[[tenant]]\nid = "a-b"\nrole = "lps"\n', "declared twice"),
        ('[[tenant]]\nid = "Bad_Id"\nrole = "lps"\n', "tenant.0.id"),
        ('[[tenant]]\nid = "ok-id"\nrole = "admin"\n', "tenant.0.role"),
        ('[[tenant]]\nid = "ok-id"\nrole = "producer"\nmay_send = ["dk.prik.receipt.v1"]\n', "receipts"),
        ("[[tenant]\n", "not valid TOML"),
    ],
)
def test_bad_tenants_files_are_one_config_error(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_tenants(text, origin="t.toml")
    message = str(caught.value)
    assert expected in message
    assert message.startswith("t.toml")
    assert "\n" not in message


def test_settings_read_prefixed_nested_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIK_KAFKA__BOOTSTRAP", "127.0.0.1:19092")
    monkeypatch.setenv("PRIK_TOPIC_PREFIX", "staging")
    settings = load_settings()
    assert settings.kafka.bootstrap == "127.0.0.1:19092"
    assert settings.topics.ingress("lps-xmo") == "staging.ingress.lps-xmo"
    assert settings.kafka.client_options() == {"bootstrap_servers": "127.0.0.1:19092"}


def test_bad_setting_is_a_config_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIK_METRICS_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="PRIK_METRICS_PORT"):
        load_settings()


def test_sasl_settings_reach_every_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIK_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("PRIK_KAFKA__SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("PRIK_KAFKA__USERNAME", "lps-xmo")
    monkeypatch.setenv("PRIK_KAFKA__PASSWORD", "s3cret")
    options = load_settings().kafka.client_options()
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_plain_password"] == "s3cret"
    assert "s3cret" not in repr(load_settings())
