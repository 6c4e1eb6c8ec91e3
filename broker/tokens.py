"""Route tokens: proof that the router delivered a message to an LPS.

Each delivery record carries `prik-route`, an HMAC over (message id, source, LPS)
with the router's key; the LPS's consumer echoes it on its receipt. The router
forwards a receipt only with a valid token, so an LPS can confirm only what it
was given, never a message it did not receive. Every router instance needs the
same key (`PRIK_ROUTE_KEY` or `PRIK_ROUTE_KEY_FILE`).
"""

from __future__ import annotations

import base64
import hmac

from contracts import ConfigError
from prik.settings import Settings

__all__ = ["DEVELOPMENT_TOKENS", "RouteTokens", "tokens_from_settings"]


class RouteTokens:
    """Makes and checks `prik-route` tokens with one key."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            msg = "the route key must be at least 16 bytes"
            raise ValueError(msg)
        self._key = key

    def __repr__(self) -> str:
        return "RouteTokens(key=<hidden>)"

    def make(self, message_id: str, source: str, lps: str) -> bytes:
        # Newlines cannot occur in ids, sources or tenant ids: the fields cannot run into each other.
        # OpenSSL's one-shot HMAC: a fifth cheaper than copying a keyed `hmac.HMAC` (py-spy: ~9% of deciding).
        mac = hmac.digest(self._key, f"{message_id}\n{source}\n{lps}".encode(), "sha256")
        return base64.urlsafe_b64encode(mac).rstrip(b"=")

    def valid(self, token: bytes | None, message_id: str, source: str, lps: str) -> bool:
        return token is not None and hmac.compare_digest(token, self.make(message_id, source, lps))


# For a single development router on PLAINTEXT only: `tokens_from_settings` refuses it in secure mode.
DEVELOPMENT_TOKENS = RouteTokens(b"prik-development-route-key-not-for-production")


def tokens_from_settings(settings: Settings) -> RouteTokens:
    """The router's tokens: `PRIK_ROUTE_KEY`, else `PRIK_ROUTE_KEY_FILE`; required in secure mode."""
    key: bytes | None = None
    if settings.route_key is not None:
        key = settings.route_key.get_secret_value().encode()
    elif settings.route_key_file is not None:
        try:
            key = settings.route_key_file.read_bytes().strip()
        except OSError as exc:
            msg = f"PRIK_ROUTE_KEY_FILE {settings.route_key_file} cannot be read: {exc.strerror}"
            raise ConfigError(msg) from None
    if key is None:
        if settings.kafka.sasl:
            msg = "secure mode needs the router's key: set PRIK_ROUTE_KEY_FILE (or PRIK_ROUTE_KEY)"
            raise ConfigError(msg)
        return DEVELOPMENT_TOKENS
    try:
        return RouteTokens(key)
    except ValueError as exc:
        msg = f"PRIK_ROUTE_KEY: {exc}"
        raise ConfigError(msg) from None
