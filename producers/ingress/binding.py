"""The CloudEvents HTTP binding, read into the form `contracts.parse` reads from Kafka.

Structured mode: `Content-Type: application/cloudevents+json`, the whole event
is the body. Binary mode: a `ce-specversion` header; every attribute is a
`ce-<name>` header (percent-encoded where needed, as the binding says) and the
body is `data`, in its content type (prik's data is always JSON). Either way
the result is a (value, headers) pair with Kafka's `ce_<name>` header names,
so the router's own parser decides, with the router's own rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from urllib.parse import unquote_to_bytes

from contracts import STRUCTURED_CONTENT_TYPE
from contracts.headers import CE_PREFIX, CONTENT_TYPE

__all__ = ["BINARY_CONTENT_TYPES", "Mode", "UnsupportedMediaType", "kafka_headers", "mode_of"]

_HTTP_CE_PREFIX = "ce-"
BINARY_CONTENT_TYPES = ("application/json",)
_CHARSETS = frozenset({"", "utf-8", "utf8"})


class Mode(StrEnum):
    STRUCTURED = "structured"
    BINARY = "binary"


class UnsupportedMediaType(ValueError):  # noqa: N818  named after the HTTP answer it becomes
    """The request's content type is none the ingress reads; the text never quotes it."""


def mode_of(content_type: str, charset: str | None, has_specversion: bool) -> Mode:
    """Which binding a request uses, from its media type (lower case, no parameters) and charset."""
    if (charset or "").lower() not in _CHARSETS:
        msg = "only UTF-8 is accepted"
        raise UnsupportedMediaType(msg)
    if content_type == STRUCTURED_CONTENT_TYPE:
        return Mode.STRUCTURED
    if has_specversion:
        if content_type in BINARY_CONTENT_TYPES:
            return Mode.BINARY
        msg = "binary mode: the body (data) must be application/json"
        raise UnsupportedMediaType(msg)
    msg = (
        f"send {STRUCTURED_CONTENT_TYPE} (structured mode), "
        "or ce-* headers with an application/json body (binary mode)"
    )
    raise UnsupportedMediaType(msg)


def _decoded(value: str) -> bytes:
    # Header text as aiohttp decoded it, back to bytes; then the binding's percent-decoding.
    return unquote_to_bytes(value.encode("utf-8", "surrogateescape"))


def kafka_headers(mode: Mode, headers: Iterable[tuple[str, str]]) -> list[tuple[str, bytes]]:
    """The Kafka headers `parse` reads for a request: none in structured mode (the body says
    everything), else each `ce-*` header as `ce_*` and every Content-Type, duplicates kept so
    that `parse` refuses them."""
    if mode is Mode.STRUCTURED:
        return [(CONTENT_TYPE, STRUCTURED_CONTENT_TYPE.encode())]
    out: list[tuple[str, bytes]] = []
    for name, value in headers:
        lower = name.lower()
        if lower == CONTENT_TYPE:
            # HTTP media types are case-insensitive (RFC 9110 8.3.1), prik's datacontenttype is not.
            media, semicolon, parameters = value.partition(";")
            typed = media.strip().lower() + semicolon + parameters
            out.append((CONTENT_TYPE, typed.encode("utf-8", "surrogateescape")))
        elif lower.startswith(_HTTP_CE_PREFIX):
            out.append((CE_PREFIX + lower.removeprefix(_HTTP_CE_PREFIX), _decoded(value)))
    return out
