"""Standard Webhooks signing and verification, through the `standardwebhooks` library.

Several secrets may be active at once, so a secret can be rotated without a gap:
each request is signed with every active secret (`v1,<sig-a> v1,<sig-b>`, the
Standard Webhooks form), and a request verifies when any active secret verifies it.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from contracts import ConfigError

__all__ = [
    "MAX_SECRET_BYTES",
    "MIN_SECRET_BYTES",
    "SECRET_PREFIX",
    "SECRET_REASONS",
    "WebhookSecrets",
    "check_secret",
    "generate_secret",
    "make_webhook",
    "sign_headers",
    "verify_signature",
]

SECRET_PREFIX = "whsec_"  # noqa: S105  the prefix of every secret, not a secret
# The Standard Webhooks spec: secrets are 24 to 64 random bytes.
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64

# Strict: the library decodes leniently and silently drops characters outside this
# alphabet (a URL-safe `-` or `_`, a space), which would sign with another key than the one meant.
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")

# The reasons never quote the secret: they go to stderr and logs.
_NO_PREFIX = f"webhook secret must start with {SECRET_PREFIX}"
_NOT_BASE64 = f"webhook secret is not standard base64 after {SECRET_PREFIX}"
_BAD_LENGTH = (
    f"webhook secret must be {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes (base64 after {SECRET_PREFIX})"
)
# Every reason a secret is refused for: the whole of what an error about a secret says.
SECRET_REASONS = (_NO_PREFIX, _NOT_BASE64, _BAD_LENGTH)


def generate_secret() -> str:
    """A fresh `whsec_<base64>` secret (24 random bytes)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(MIN_SECRET_BYTES)).decode("ascii")


def _key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ConfigError(_NO_PREFIX)
    encoded = secret[len(SECRET_PREFIX) :]
    # Longer than any 64-byte key could encode to: refused before any decoding work.
    if len(encoded) > 4 * (MAX_SECRET_BYTES // 3 + 1):
        raise ConfigError(_BAD_LENGTH)
    if not _BASE64.fullmatch(encoded):
        raise ConfigError(_NOT_BASE64)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise ConfigError(_NOT_BASE64) from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ConfigError(_BAD_LENGTH)
    return key


def check_secret(secret: str) -> None:
    """Raise ConfigError (whose text never quotes `secret`) unless it is `whsec_` + base64 of 24-64 bytes."""
    _key(secret)


def make_webhook(secret: str) -> Webhook:
    """The library's signer/verifier for `secret`; a malformed secret is a ConfigError."""
    # The checked key, not the text: the library would decode the text leniently.
    return Webhook(_key(secret))


class WebhookSecrets:
    """The active secrets: a request is signed with each and verifies under any one.

    Only the library's `Webhook` objects are kept, not the secrets' text, and the
    repr names how many there are, so this object can be logged or shown safely.
    """

    __slots__ = ("_webhooks",)

    def __init__(self, secrets: str | Iterable[str]) -> None:
        given = [secrets] if isinstance(secrets, str) else list(secrets)
        keys: list[bytes] = []
        for number, secret in enumerate(given, start=1):
            try:
                key = _key(secret)
            except ConfigError as exc:
                where = f" (secret {number} of {len(given)})" if len(given) > 1 else ""
                msg = f"{exc}{where}"
                raise ConfigError(msg) from None
            if key not in keys:  # the same secret twice would only repeat its signature
                keys.append(key)
        if not keys:
            msg = "no webhook secret given"
            raise ConfigError(msg)
        self._webhooks = tuple(Webhook(key) for key in keys)

    def __len__(self) -> int:
        return len(self._webhooks)

    def __iter__(self) -> Iterator[Webhook]:
        return iter(self._webhooks)

    def __repr__(self) -> str:
        return f"WebhookSecrets(<{len(self._webhooks)} active>)"

    def sign(self, msg_id: str, body: bytes, now: datetime | None = None) -> dict[str, str]:
        """Standard Webhooks headers for `body`, signed with every active secret."""
        return sign_headers(self, msg_id, body, now)

    def verify(self, body: bytes, headers: Mapping[str, str]) -> bool:
        """Whether any active secret verifies `headers` for `body` (fresh timestamp included)."""
        return verify_signature(self, body, headers)


def _webhooks(signers: Webhook | Iterable[Webhook]) -> tuple[Webhook, ...]:
    return (signers,) if isinstance(signers, Webhook) else tuple(signers)


def sign_headers(
    signers: Webhook | Iterable[Webhook], msg_id: str, body: bytes, now: datetime | None = None
) -> dict[str, str]:
    """`webhook-id`, `webhook-timestamp` and `webhook-signature` for `body`, one `v1,` per signer.

    The timestamp is "now" on every attempt (receivers refuse ones older than 5
    minutes); the id stays the envelope id, so a receiver sees a retry as a duplicate.
    """
    webhooks = _webhooks(signers)
    if not webhooks:
        msg = "sign_headers needs at least one secret"
        raise ValueError(msg)
    moment = now if now is not None else datetime.now(UTC)
    timestamp = int(moment.timestamp())
    # The library floors and reads the timestamp as UTC; hand it exactly what the header says.
    signed_at = datetime.fromtimestamp(timestamp, UTC)
    text = body.decode("utf-8")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        # Space-separated, as Standard Webhooks receivers expect; each checks the ones it can.
        "webhook-signature": " ".join(webhook.sign(msg_id, signed_at, text) for webhook in webhooks),
    }


def _verifies(webhook: Webhook, body: bytes, headers: dict[str, str]) -> bool:
    try:
        webhook.verify(body, headers, json_parse=False)
    # The library raises its own error for a wrong signature but ValueError, binascii
    # and Unicode errors for malformed headers or bodies: all of them mean "not verified".
    except Exception:  # noqa: BLE001
        return False
    return True


def verify_signature(verifiers: Webhook | Iterable[Webhook], body: bytes, headers: Mapping[str, str]) -> bool:
    """Whether any of `verifiers` finds a valid, fresh Standard Webhooks signature of `body`."""
    sent = dict(headers)
    return any(_verifies(webhook, body, sent) for webhook in _webhooks(verifiers))
