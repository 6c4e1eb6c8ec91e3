"""A record with one `content-type` header takes `parse`'s short way and is decided exactly as the long way.

prik's senders and the router write every record with exactly that header, so the
short way is the common one. The corpus is the golden corpus's inputs (valid,
mutated, hostile), each with one content-type header of many shapes, against
`_parse`, the way every other record takes.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable
from functools import cache, partial
from pathlib import Path

import pytest

from contracts import MAX_MESSAGE_BYTES, STRUCTURED_CONTENT_TYPE, Message, ParseError, parse
from contracts.headers import normalise_headers
from contracts.parse import _parse

CORPUS = Path(__file__).resolve().parents[1] / "data" / "codec_golden" / "corpus.jsonl.gz"

CONTENT_TYPES = [
    STRUCTURED_CONTENT_TYPE.encode(),
    b"application/json",
    b"",
    b"text/plain; charset=utf-8",
    b"\xff\xfe not UTF-8",
    b"x" * 255,
    b"x" * 256,
    b"x" * 257,
    b"x" * 20_000,
]


@cache
def _values() -> tuple[bytes, ...]:
    values = []
    with gzip.open(CORPUS, "rt", encoding="utf-8") as lines:
        for line in lines:
            case = json.loads(line)
            if case["kind"] == "parse" and case["as"] == "bytes":
                values.append(base64.b64decode(case["value"]))
    return tuple(values)


def _outcome(read: Callable[[], Message]) -> Message | tuple[str, str]:
    try:
        return read()
    except ParseError as exc:
        return (exc.stage, exc.reason)


@pytest.mark.parametrize("content_type", CONTENT_TYPES, ids=lambda v: f"{len(v)}-bytes")
@pytest.mark.parametrize("name", ["content-type", "Content-Type", "ce_specversion"])
def test_one_header_is_decided_as_the_long_way_decides(name: str, content_type: bytes) -> None:
    values = _values()
    assert len(values) > 2_000
    accepted = 0
    for value in values:
        for headers in ([(name, content_type)], ((name, content_type),)):
            short = _outcome(partial(parse, value, headers))
            long = _outcome(partial(_parse, value, normalise_headers(headers), MAX_MESSAGE_BYTES))
            assert short == long, (name, len(content_type), value[:80])
            accepted += not isinstance(short, tuple)
    if name != "ce_specversion" and len(content_type) < 20_000:
        # The corpus's valid messages are read as such: the comparison is not between two refusals.
        assert accepted > 500
