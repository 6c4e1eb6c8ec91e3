"""Topic, source and header names; the error tree."""

from __future__ import annotations

import pickle
import re

import pytest

from contracts import (
    DIRECTORY_TOPIC,
    DLQ_TOPIC,
    INGRESS_PATTERN,
    INGRESS_PREFIX,
    ROUTER_SOURCE,
    TASKS_TOPIC,
    ConfigError,
    DeliveryError,
    ErrorStage,
    KafkaError,
    NotAuthorisedError,
    ParseError,
    PrikError,
    TransitionError,
    deliver_topic,
    ingress_topic,
    replies_topic,
    source_of,
    tenant_of_ingress,
    tenant_of_source,
)
from contracts import headers as h


def test_topic_names() -> None:
    assert INGRESS_PREFIX == "prik.ingress."
    assert ingress_topic("minlaege-video") == "prik.ingress.minlaege-video"
    assert deliver_topic("lps-xmo") == "prik.deliver.lps-xmo"
    assert replies_topic("kommune-0101") == "prik.replies.kommune-0101"
    assert (DLQ_TOPIC, DIRECTORY_TOPIC, TASKS_TOPIC) == ("prik.dlq", "prik.directory", "prik.tasks")
    assert re.match(INGRESS_PATTERN, ingress_topic("lps-xmo"))
    assert not re.match(INGRESS_PATTERN, deliver_topic("lps-xmo"))


@pytest.mark.parametrize("bad", ["", "A", "a", "a.b", "a b", "-ab"])
def test_topic_names_refuse_bad_tenants(bad: str) -> None:
    for make in (ingress_topic, deliver_topic, replies_topic, source_of):
        with pytest.raises(ConfigError):
            make(bad)


def test_tenant_of_ingress() -> None:
    assert tenant_of_ingress("prik.ingress.kommune-0101") == "kommune-0101"
    assert tenant_of_ingress("prik.deliver.lps-xmo") is None
    assert tenant_of_ingress("prik.ingress.") is None
    assert tenant_of_ingress("prik.ingress.Bad_Name") is None


def test_sources() -> None:
    assert source_of("minlaege-video") == "urn:prik:minlaege-video"
    assert tenant_of_source("urn:prik:minlaege-video") == "minlaege-video"
    assert tenant_of_source(ROUTER_SOURCE) == "router"
    assert tenant_of_source("urn:other:x") is None
    assert tenant_of_source("urn:prik:") is None


def test_header_names() -> None:
    assert h.ERROR_STAGE == "prik-error-stage"
    assert h.ERROR_REASON == "prik-error-reason"
    assert h.ORIGINAL_TOPIC == "prik-original-topic"
    assert h.ORIGINAL_PARTITION == "prik-original-partition"
    assert h.ORIGINAL_OFFSET == "prik-original-offset"
    assert h.CONTENT_TYPE == "content-type"
    assert [s.value for s in ErrorStage] == [
        "parse", "validate", "authenticate", "authorise", "route", "task", "receipt", "deliver", "internal",
    ]  # fmt: skip


def test_error_tree() -> None:
    assert issubclass(ConfigError, PrikError)
    assert issubclass(ConfigError, ValueError)
    assert issubclass(ParseError, ValueError)
    assert issubclass(KafkaError, ConnectionError)
    assert issubclass(NotAuthorisedError, PermissionError)
    assert issubclass(TransitionError, ValueError)
    assert issubclass(DeliveryError, RuntimeError)
    assert PrikError.retriable is False
    assert KafkaError("x").retriable is False
    assert KafkaError("x", retriable=True).retriable is True


def test_parse_error() -> None:
    error = ParseError("x" * 1000, stage="parse")
    assert len(error.reason) == 300
    assert error.reason.endswith("...")
    assert str(error) == error.reason
    assert error.stage == "parse"
    again = pickle.loads(pickle.dumps(ParseError("short", stage="parse")))  # noqa: S301  our own object
    assert (again.reason, again.stage) == ("short", "parse")
