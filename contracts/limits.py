"""Input limits at the edge: what a record may cost prik before anything reads it.

Every check here runs before the JSON is validated against a model, so a hostile
record (64 MiB of headers, 100k unknown keys, a duplicated `recipient`) is refused
for the price of a length check or one regular-expression pass.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from contracts.errors import ParseError

__all__ = [
    "MAX_HEADERS",
    "MAX_HEADER_BYTES",
    "MAX_HEADER_NAME_CHARS",
    "MAX_KEY_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_VALUES",
    "MAX_YEAR",
    "MIN_YEAR",
    "check_record",
    "check_unique_members",
]

MAX_MESSAGE_BYTES = 64 * 1024
"""DESIGN.md: a record value over this (`PRIK_MAX_MESSAGE_BYTES`) is refused before parsing."""
MAX_KEY_BYTES = 1024
# A binary-mode message carries a dozen `ce_*` headers; tracing adds two.
MAX_HEADERS = 32
MAX_HEADER_NAME_CHARS = 128
MAX_HEADER_BYTES = 16 * 1024
"""All header names and values of one record together."""
MAX_VALUES = 512
"""JSON values in one message, all levels together (members, values, array items); a valid one has ~40."""
MIN_YEAR = 2000
MAX_YEAR = 2099

# A JSON string token; valid JSON (checked by orjson first) has no other use of '"'.
# Unrolled ("normal* (special normal*)*"): a third of the cost of an alternation per character.
_STRING_RE = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def check_record(
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]],
    *,
    max_bytes: int = MAX_MESSAGE_BYTES,
) -> None:
    """Refuse a record whose key, value or headers are larger than prik reads.

    Headers must already be normalised to (text name, bytes value) pairs.
    """
    if value is not None and len(value) > max_bytes:
        msg = f"record value is {len(value)} bytes, over the limit of {max_bytes}"
        raise ParseError(msg, stage="parse")
    if key is not None and len(key) > MAX_KEY_BYTES:
        msg = f"record key is {len(key)} bytes, over the limit of {MAX_KEY_BYTES}"
        raise ParseError(msg, stage="parse")
    if len(headers) > MAX_HEADERS:
        msg = f"record has {len(headers)} headers, over the limit of {MAX_HEADERS}"
        raise ParseError(msg, stage="parse")
    total = 0
    for name, raw in headers:
        if len(name) > MAX_HEADER_NAME_CHARS:
            msg = f"a header name is over {MAX_HEADER_NAME_CHARS} characters"
            raise ParseError(msg, stage="parse")
        total += len(name) + len(raw)
    if total > MAX_HEADER_BYTES:
        msg = f"headers are {total} bytes, over the limit of {MAX_HEADER_BYTES}"
        raise ParseError(msg, stage="parse")


def _members(obj: Any) -> int:  # noqa: ANN401  any decoded JSON value
    """Object members at every level; refuses once more values than `MAX_VALUES` are seen.

    The early stop keeps a record of 60 KiB of tiny strings as cheap as its decoding.
    """
    # A loop, not recursion: orjson accepts nesting deeper than Python's recursion limit.
    members, values, stack = 0, 0, [obj]
    while stack:
        item = stack.pop()
        values += 1
        if values > MAX_VALUES:
            msg = f"message has over {MAX_VALUES} JSON values"
            raise ParseError(msg, stage="parse")
        if isinstance(item, dict):
            members += len(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return members


def check_unique_members(raw: bytes, obj: Any) -> None:  # noqa: ANN401  any decoded JSON value
    """Refuse JSON with a duplicated object key at any level, or with too many values.

    `obj` is what orjson decoded from `raw`. orjson keeps the last of duplicated keys,
    other parsers the first: forwarding such bytes would let a reader see something
    else than was checked. Every ':' outside a string token separates one member, so
    a decoded tree with fewer members than that had duplicates.
    """
    members = _members(obj)
    colons = _STRING_RE.sub(b"", raw).count(b":")
    if members != colons:
        msg = "a JSON object has a duplicated key"
        raise ParseError(msg, stage="parse")
