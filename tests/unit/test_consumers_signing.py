"""Signed webhooks verify with the standardwebhooks library, and only with the right secret and body."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from consumers import generate_secret, make_webhook, sign_headers, verify_signature
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
