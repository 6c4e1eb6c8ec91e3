"""Standard Webhooks signing and verification, through the `standardwebhooks` library."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from contracts import ConfigError

__all__ = [
    "SECRET_PREFIX",
    "generate_secret",
    "make_webhook",
    "sign_headers",
    "verify_signature",
]

SECRET_PREFIX = "whsec_"  # noqa: S105  the prefix of every secret, not a secret


def generate_secret() -> str:
    """A fresh `whsec_<base64>` secret (24 random bytes)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def make_webhook(secret: str) -> Webhook:
    """The library's signer/verifier for `secret`; a malformed secret is a ConfigError."""
    if not secret.startswith(SECRET_PREFIX):
        msg = f"webhook secret must start with {SECRET_PREFIX}"
        raise ConfigError(msg)
    try:
        return Webhook(secret)
    except Exception as exc:  # the library raises several types for a bad secret
        msg = f"webhook secret is not valid base64 after {SECRET_PREFIX}"
        raise ConfigError(msg) from exc


def sign_headers(webhook: Webhook, msg_id: str, body: bytes, now: datetime | None = None) -> dict[str, str]:
    """`webhook-id`, `webhook-timestamp` and `webhook-signature` for `body`.

    The timestamp is "now" on every attempt (receivers refuse ones older than 5
    minutes); the id stays the envelope id, so a receiver sees a retry as a duplicate.
    """
    moment = now if now is not None else datetime.now(UTC)
    timestamp = int(moment.timestamp())
    # The library floors and reads the timestamp as UTC; hand it exactly what the header says.
    signature = webhook.sign(msg_id, datetime.fromtimestamp(timestamp, UTC), body.decode("utf-8"))
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


def verify_signature(webhook: Webhook, body: bytes, headers: Mapping[str, str]) -> bool:
    """Whether `headers` carry a valid, fresh Standard Webhooks signature of `body`."""
    try:
        webhook.verify(body, dict(headers), json_parse=False)
    # The library raises its own error for a wrong signature but ValueError, binascii
    # and Unicode errors for malformed headers or bodies: all of them mean "not verified".
    except Exception:  # noqa: BLE001
        return False
    return True
