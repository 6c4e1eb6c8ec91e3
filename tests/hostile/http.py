"""The hostile corpus as HTTP requests to the ingress, and what the router's rules say of each.

A Kafka record becomes the CloudEvents HTTP request a sender would make for it:
binary mode (`ce_specversion` present) as `ce-*` headers, percent-encoded as
the HTTP binding says, with the data as body; structured mode as an
`application/cloudevents+json` body. Where that is exact (`lossless`), the
ingress must answer what the router's own pure rules decide for the record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from broker.tenancy import admission_refusal
from contracts import MAX_MESSAGE_BYTES, ParseError, Tenants, codec, parse, to_bytes

from .corpus import CPRS, HostileRecord, cpr_leaks

__all__ = ["HttpCase", "as_http", "echoes", "expected_status"]

_PATTERN_QUOTE = re.compile(r"pattern '[^']*'")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Printable ASCII but '%': what a header value may carry without percent-encoding.
_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


@dataclass(frozen=True)
class HttpCase:
    record: HostileRecord
    headers: list[tuple[str, str]]
    body: bytes
    binary: bool
    # The request says exactly what the record says: the answers must agree.
    lossless: bool


def as_http(record: HostileRecord) -> HttpCase:
    present = [(k, v) for k, v in record.headers if v is not None]
    binary = any(k.lower() == "ce_specversion" for k, _ in present)
    body = record.value or b""
    if not binary:
        lossless = all(k.lower() == "content-type" for k, _ in present)
        return HttpCase(record, [("Content-Type", "application/cloudevents+json")], body, False, lossless)
    headers: list[tuple[str, str]] = []
    lossless = True
    content_types = 0
    for name, value in present:
        lower = name.lower()
        if lower == "content-type":
            content_types += 1
            lossless &= value == b"application/json"
            headers.append(("Content-Type", quote(value, safe=_SAFE)))
        elif lower.startswith("ce_") and _TOKEN.fullmatch(lower[3:] or "x"):
            headers.append(("ce-" + lower[3:], quote(value, safe=_SAFE)))
        else:
            lossless = False  # no HTTP header can carry that name, or it is not an attribute
    if content_types == 0:
        headers.append(("Content-Type", "application/json"))
        lossless = False
    return HttpCase(record, headers, body, True, lossless and content_types == 1)


def expected_status(record: HostileRecord, tenants: Tenants, max_bytes: int = MAX_MESSAGE_BYTES) -> int:
    """What the router's rules make of the record, as the ingress's answer."""
    if tenants.get(record.tenant) is None:
        return 401
    try:
        message = parse(record.value, record.headers, max_bytes=max_bytes)
    except ParseError as exc:
        return 413 if exc.reason.startswith("record value is") else 400
    if admission_refusal(message, record.tenant, tenants) is not None:
        return 403
    if len(to_bytes(message)) > max_bytes:
        return 413
    return 202


def _strings(value: Any) -> list[str]:
    # A loop: the corpus nests deeper than Python's recursion limit.
    out, stack = [], [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return out


def echoes(case: HttpCase, answer: bytes) -> list[str]:
    """What of the request's data (or any corpus CPR) an answer repeats."""
    found = cpr_leaks(answer)
    try:
        sent = codec.loads(case.body)
    except ParseError:
        return found
    data = sent.get("data") if isinstance(sent, dict) and not case.binary else sent
    # A rule's own text may quote its pattern ("should match pattern '^https://...'"): not an echo.
    text = _PATTERN_QUOTE.sub("", answer.decode("utf-8", "replace"))
    found += [s for s in _strings(data) if len(s) >= 8 and s in text]
    return found + [c for c in CPRS if c in text]
