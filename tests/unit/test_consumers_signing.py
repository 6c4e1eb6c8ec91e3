"""Signed webhooks verify with the standardwebhooks library, and only with the right secret and body."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from consumers import (
    WebhookSecrets,
    check_secret,
    generate_secret,
    make_webhook,
    sign_headers,
    verify_signature,
)
from consumers.signing import SECRET_REASONS
from contracts import ConfigError

BODY = b'{"id":"m-1","type":"dk.prik.advisory.video-queue.v1"}'


def test_signed_headers_verify_with_the_library() -> None:
    secret = generate_secret()
    headers = sign_headers(make_webhook(secret), "m-1", BODY)
    assert headers["webhook-id"] == "m-1"
    assert headers["webhook-signature"].startswith("v1,")
    # An independent verifier built from the secret alone.
    assert Webhook(secret).verify(BODY, headers) == {
        "id": "m-1",
        "type": "dk.prik.advisory.video-queue.v1",
    }


def test_wrong_secret_or_changed_body_fails() -> None:
    secret = generate_secret()
    headers = sign_headers(make_webhook(secret), "m-1", BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"m-1", b"m-2"), headers)
    assert not verify_signature(make_webhook(secret), BODY + b" ", headers)


def test_stale_timestamp_fails() -> None:
    secret = generate_secret()
    old = datetime.now(UTC) - timedelta(minutes=10)
    headers = sign_headers(make_webhook(secret), "m-1", BODY, now=old)
    assert not verify_signature(make_webhook(secret), BODY, headers)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"webhook-id": "m-1", "webhook-timestamp": "x", "webhook-signature": "v1,AAAA"},
        {"webhook-id": "m-1", "webhook-timestamp": "1", "webhook-signature": "garbage"},
    ],
)
def test_malformed_headers_are_just_unverified(headers: dict[str, str]) -> None:
    assert not verify_signature(make_webhook(generate_secret()), BODY, headers)


def test_secret_must_be_whsec() -> None:
    with pytest.raises(ConfigError, match="whsec_"):
        make_webhook("not-a-secret")


def test_several_secrets_give_one_signature_each_and_any_verifies() -> None:
    old, new = generate_secret(), generate_secret()
    headers = WebhookSecrets([old, new]).sign("m-1", BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old).verify(BODY, headers)["id"] == "m-1"
    assert Webhook(new).verify(BODY, headers)["id"] == "m-1"
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(BODY, headers)
    # And the other way round: a verifier holding both accepts a signature by either.
    both = WebhookSecrets([old, new])
    assert both.verify(BODY, sign_headers(Webhook(old), "m-2", BODY))
    assert both.verify(BODY, sign_headers(Webhook(new), "m-3", BODY))
    assert not both.verify(BODY, sign_headers(Webhook(generate_secret()), "m-4", BODY))


def test_secrets_object_never_shows_a_secret() -> None:
    secret = generate_secret()
    active = WebhookSecrets([secret, generate_secret()])
    assert len(active) == 2
    assert repr(active) == str(active) == "WebhookSecrets(<2 active>)"
    assert secret not in repr(active)


def test_secret_format_follows_standard_webhooks() -> None:
    key = bytes(range(32))
    padded = "whsec_" + base64.b64encode(key).decode()
    assert padded.endswith("=")
    # Padding is optional, as the library treats it.
    assert make_webhook(padded.rstrip("=")).sign("m", datetime.now(UTC), "x") == Webhook(padded).sign(
        "m", datetime.now(UTC), "x"
    )
    check_secret("whsec_" + base64.b64encode(bytes(24)).decode())
    check_secret("whsec_" + base64.b64encode(bytes(64)).decode())


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("", "start with whsec_"),
        ("whsec_", "base64"),
        (base64.b64encode(bytes(32)).decode(), "start with whsec_"),
        ("WHSEC_" + base64.b64encode(bytes(32)).decode(), "start with whsec_"),
        ("whsec_" + base64.b64encode(bytes(23)).decode(), "24 to 64 bytes"),
        ("whsec_" + base64.b64encode(bytes(65)).decode(), "24 to 64 bytes"),
        ("whsec_" + "A" * 10_000, "24 to 64 bytes"),
        # URL-safe base64: the library would silently drop `-` and `_` and sign with another key.
        ("whsec_" + base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode(), "base64"),
        ("whsec_" + base64.b64encode(bytes(32)).decode() + " ", "base64"),
        (" " + generate_secret(), "start with whsec_"),
        ("whsec_" + "A" * 33, "base64"),  # a length no base64 text can have
        ("whsec_AAAA====", "base64"),
    ],
)
def test_malformed_secrets_are_refused_without_being_quoted(secret: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason) as caught:
        WebhookSecrets([generate_secret(), secret])
    # The whole message is a fixed reason and a position: nothing of the secret itself.
    assert str(caught.value).removesuffix(" (secret 2 of 2)") in SECRET_REASONS


def test_no_secret_at_all_is_refused() -> None:
    with pytest.raises(ConfigError, match="no webhook secret"):
        WebhookSecrets([])


_VALID_BODY = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def _valid(secret: str) -> bool:
    """An independent reading of the rule: `whsec_` + standard base64 of 24 to 64 bytes."""
    body = secret.removeprefix("whsec_")
    if body == secret or not _VALID_BODY.fullmatch(body):
        return False
    try:
        key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except binascii.Error:
        return False
    return 24 <= len(key) <= 64


@given(
    st.one_of(
        st.text(),
        st.text().map(lambda tail: "whsec_" + tail),
        st.binary(max_size=200).map(lambda raw: "whsec_" + base64.b64encode(raw).decode()),
        st.binary(min_size=24, max_size=64).map(
            lambda raw: "whsec_" + base64.urlsafe_b64encode(raw).decode()
        ),
    )
)
@settings(max_examples=300)
def test_only_wellformed_secrets_pass_and_errors_are_a_fixed_reason(secret: str) -> None:
    if _valid(secret):
        check_secret(secret)
        return
    with pytest.raises(ConfigError) as caught:
        check_secret(secret)
    assert str(caught.value) in SECRET_REASONS
