"""The faster `parse` decides every input exactly as the codec before issue 12 did.

The oracle is that codec itself, kept verbatim in `tests.unit.codec_oracle`. For
valid messages and for mutations of them (fields removed, wrong types, numbers
and odd strings for times, CPR numbers in ids and texts, unknown fields,
duplicate keys, non-canonical bytes, binary mode), both must accept the same
messages, equal field by field, and refuse the rest at the same stage with the
same reason.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, cast

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter
from pydantic_core import ValidationError

from contracts import HttpsUrl, Message, ParseError, Patient, example_messages, parse, to_binary, to_bytes
from tests.unit.codec_oracle import parse as oracle
from tests.unit.codec_oracle.identifiers import HttpsUrl as OldHttpsUrl
from tests.unit.codec_oracle.identifiers import Patient as OldPatient
from tests.unit.test_contracts_parse import cpr_texts, messages

FUZZ = settings(max_examples=600, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

Outcome = tuple[Any, ...]
Value = bytes | bytearray | memoryview


def _fields(model: BaseModel) -> list[tuple[str, str, Any]]:
    """Every field at every level: name, Python type, and for times whether they are held in UTC."""
    found: list[tuple[str, str, bool | None]] = []
    for name, value in model.__dict__.items():
        if isinstance(value, BaseModel):
            found.append((name, type(value).__name__, None))
            found.extend((f"{name}.{n}", t, u) for n, t, u in _fields(value))
        else:
            found.append(
                (name, type(value).__name__, value.tzinfo is UTC if isinstance(value, datetime) else None)
            )
    return found


def _decide(read: Any, value: Value, headers: Iterable[object] | None) -> Outcome:
    try:
        message = read(value, headers)
    except ParseError as exc:
        return ("refused", exc.stage, exc.reason)
    return (
        "accepted",
        type(message).__name__,
        message.__pydantic_serializer__.to_json(message, exclude_none=True),
        _fields(message),
    )


def _same(value: Value, headers: Iterable[object] | None = None) -> Outcome:
    new = _decide(parse, value, headers)
    assert new == _decide(oracle.parse, value, headers)
    if new[0] == "accepted":
        # And written back byte for byte as the old codec wrote it.
        handed = cast("bytes", value)  # what a client hands over, typed as parse expects
        assert to_bytes(parse(handed, headers)) == oracle.to_bytes(oracle.parse(handed, headers))
    return new


# --- mutations -----------------------------------------------------------------------------

_TIME_TEXTS = st.sampled_from(
    [
        "2026-11-26T09:30:00Z",
        "2026-11-26T09:30:00.123456Z",
        "2026-11-26T09:30:00.1234567Z",
        "2026-11-26t09:30:00z",
        "2026-11-26T09:30:00+02:00",
        "2026-11-26T09:30:00-23:59",
        "2026-11-26T09:30:00+24:00",
        "2026-11-26 09:30:00Z",
        "2026-11-26T09:30:00",
        "2026-11-26T09:30Z",
        "2026-02-30T09:30:00Z",
        "2026-13-01T09:30:00Z",
        "2026-11-26T24:00:00Z",
        "2026-11-26T23:59:60Z",
        "1999-12-31T23:59:59Z",
        "2000-01-01T00:30:00+01:00",
        "2099-12-31T23:59:59.999999Z",
        "2099-12-31T23:30:00-01:00",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "1764149400",
        "",
    ]
) | st.builds(
    lambda y, mo, d, h, mi, s, frac, zone: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{frac}{zone}",
    st.integers(1995, 2105),
    st.integers(0, 13),
    st.integers(0, 32),
    st.integers(0, 24),
    st.integers(0, 60),
    st.integers(0, 60),
    st.sampled_from(["", ".5", ".000001", ".123456", ".1234567", ".123456789"]),
    st.sampled_from(["Z", "z", "+00:00", "-00:00", "+02:00", "-05:30", "+23:59", "+14:00", ""]),
)
_TEXTS = st.sampled_from(
    [
        "",
        " ",
        "x",
        "a b",
        "0101901234",
        "010190-1234",
        "3213990000",
        "1234567890",
        "patient 0101901234 here",
        "ref-010190-1234",
        "application/json",
        "application/json; charset=utf-8",
        "application/json; x=0101901234",
        "application/json;0101901234",
        "text/plain",
        "urn:prik:minlaege-video",
        "urn:prik:A",
        "1.0",
        "0.3",
        "https://video.example.dk/room/1",
        "http://video.example.dk/room/1",
        "https://",
        "https://user@:443/x",
        "https://[::1/x",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "vendor=abc,other=0101901234",
        "101",
        "100",
        "860",
        "861",
        "0101",
        "123456789012345",
        "normal",
        "urgent",
        "joined",
        "received",
        "delivered",
        "3b0f7c2e-6a51-4d0e-9c1a-0d6f2b7e4a11",
        "not-a-uuid",
        "dk.prik.task.status.v1",
        "x" * 201,
        "\x00",
        "\ud800",
    ]
)
_ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    _TEXTS,
    _TIME_TEXTS,
    cpr_texts(),
    st.lists(st.integers(0, 9), max_size=3),
    st.dictionaries(st.sampled_from(["cpr", "x", "0101901234"]), cpr_texts() | st.integers(), max_size=2),
)


def _paths(obj: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for key, value in obj.items():
        found.append((*prefix, key))
        if isinstance(value, dict):
            found.extend(_paths(value, (*prefix, key)))
    return found


def _parent(obj: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    node: dict[str, Any] = obj
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            return None
        node = child
    return node


_KNOWN_NAMES = [
    "id", "source", "type", "time", "specversion", "datacontenttype", "recipient", "expiresat",
    "correlationid", "priority", "subject", "traceparent", "tracestate", "partitionkey", "data",
    "patient", "cpr", "waiting_since", "due", "at", "consultation_url", "municipality_code",
    "message_id", "position", "attempts", "task_id", "colour", "0101901234",
]  # fmt: skip


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    message = draw(messages)
    obj = orjson.loads(to_bytes(message))
    # Paths uniformly: hypothesis favours the first of a sampled list, here always `specversion`.
    pick = random.Random(draw(st.integers(0, 2**32)))
    for _ in range(draw(st.integers(1, 3))):
        path = pick.choice(_paths(obj) or [("id",)])
        parent = _parent(obj, path)
        if parent is None:
            continue
        action = pick.choice(["drop", "set", "set", "set", "time", "add"])
        if action == "drop":
            parent.pop(path[-1], None)
        elif action == "set":
            parent[path[-1]] = draw(_ODD_VALUES)
        elif action == "time":
            # Times in every field that has one: mostly valid, so acceptance is compared too.
            for name in ("time", "expiresat", "waiting_since", "due", "at"):
                for holder in (obj, obj.get("data")):
                    if isinstance(holder, dict) and name in holder:
                        holder[name] = draw(_TIME_TEXTS)
        else:
            parent[pick.choice(_KNOWN_NAMES)] = draw(_ODD_VALUES)
    try:
        value = orjson.dumps(obj)
    except orjson.JSONEncodeError:
        return to_bytes(message)
    return _reshaped(value, obj, pick, draw(_ODD_VALUES))


def _reshaped(value: bytes, obj: dict[str, Any], pick: random.Random, odd: object) -> bytes:
    """The same JSON as other bytes: canonical, indented, or with a duplicated key at the top or in data."""
    shape = pick.choice(["canonical", "canonical", "canonical", "indented", "duplicate", "duplicate-in-data"])
    if shape == "indented":
        return orjson.dumps(obj, option=orjson.OPT_INDENT_2)
    try:
        repeated = orjson.dumps(odd)
    except orjson.JSONEncodeError:  # a lone surrogate
        repeated = b"null"
    member = b'"' + pick.choice(_KNOWN_NAMES).encode() + b'":' + repeated + b","
    if shape == "duplicate":
        return b"{" + member + value[1:]
    if shape == "duplicate-in-data":
        return value.replace(b'"data":{"', b'"data":{' + member + b'"', 1)
    return value


# --- the comparisons ---------------------------------------------------------------------------


@FUZZ
@given(messages)
def test_valid_messages_are_accepted_alike(message: Message) -> None:
    assert _same(to_bytes(message))[0] == "accepted"
    assert _same(to_bytes(message), [])[0] == "accepted"
    assert _same(bytearray(to_bytes(message)))[0] == "accepted"  # what a client may hand over
    # The old codec could not count commas in a memoryview: it refused one as unreadable.
    assert _same(memoryview(to_bytes(message)))[0] == "refused"


@FUZZ
@given(_mutated())
def test_mutated_messages_are_decided_alike(value: bytes) -> None:
    _same(value)


@FUZZ
@given(
    messages, st.lists(st.tuples(st.sampled_from(["ce_time", "ce_id", "ce_subject"]), _TEXTS | _TIME_TEXTS))
)
def test_binary_mode_is_decided_alike(message: Message, edits: list[tuple[str, str]]) -> None:
    value, headers = to_binary(message)
    for name, text in edits:
        headers = [(n, v) for n, v in headers if n != name]
        headers.append((name, text.encode("utf-8", "surrogatepass")))
    _same(value, headers)
    _same(memoryview(value), headers)


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"{",
        b"[]",
        b"null",
        b'{"specversion":"1.0"}',
        b'{"type":"dk.prik.task.status.v1"}',
        b"[" + b"0," * 510 + b"0]",
        b"[" + b"0," * 511 + b"0]",
        b"[" + b"0," * 512 + b"0]",
        b'{"a":[' + b"0," * 600 + b'0],"a":1}',
        b"[" + b"[]," * 300 + b"[]]",
        b'{"id":"a","id":"a"}',
    ],
)
def test_edges_of_the_value_limit_are_decided_alike(value: bytes) -> None:
    _same(value)


# --- CPR numbers in data -------------------------------------------------------------------------


def _patient(model: type[BaseModel], value: object) -> tuple[Any, ...]:
    try:
        patient = model.model_validate({"cpr": value})
    except ValidationError as exc:
        return (
            "refused",
            [(e["type"], e["msg"]) for e in exc.errors(include_url=False, include_input=False)],
        )
    cpr = patient.__dict__["cpr"]
    return ("accepted", type(cpr).__name__, cpr.value, str(cpr))


@FUZZ
@given(
    cpr_texts()
    | st.text(st.sampled_from("0123456789-"), max_size=12)
    | st.sampled_from(
        ["", "3213990000", "0113901234", "3002901234", "2902001234", "010190_1234", "٠١٠١٩٠١٢٣٤"]
    )
    | st.integers()
    | st.none()
)
def test_cpr_numbers_are_decided_alike(value: object) -> None:
    assert _patient(Patient, value) == _patient(OldPatient, value)


# --- https URLs ------------------------------------------------------------------------------------

_URL_TAILS = st.text(st.sampled_from("aZ09.-/?#:@[]%_~"), max_size=16)


def _url(adapter: TypeAdapter[str], value: str) -> tuple[Any, ...]:
    try:
        return ("accepted", adapter.validate_python(value))
    except ValidationError as exc:
        return (
            "refused",
            [(e["type"], e["msg"]) for e in exc.errors(include_url=False, include_input=False)],
        )


@FUZZ
@given(
    _URL_TAILS.map(lambda tail: "https://" + tail) | _URL_TAILS.map(lambda tail: "http://" + tail) | _TEXTS
)
def test_https_urls_are_decided_alike(value: str) -> None:
    assert _url(TypeAdapter(HttpsUrl), value) == _url(TypeAdapter(OldHttpsUrl), value)


# --- hand-made hostile corpus --------------------------------------------------------------------

_EXAMPLES = [to_bytes(message) for message in example_messages().values()]


def _with_member(value: bytes, where: bytes, member: bytes) -> bytes:
    """`value` with `member` ("key":value) first inside the object that opens at `where`."""
    return value.replace(where + b"{", where + b"{" + member + b",", 1)


_LITERALS = (b"NaN", b"-Infinity", b"1e400", b"1" * 30, b'"\\ud800"', b'"\xed\xa0\x80"')
_ODD_TIMES = (
    "2026-11-26T23:59:60Z",
    "2026-11-26T09:30:00.1234567+05:45",
    "1999-12-31T23:59:59Z",
    "2099-12-31T23:59:59-00:01",
    "2026-11-26T09:30:00",
    "\uff12\uff10\uff12\uff16-11-26T09:30:00Z",  # full-width digits
    1764149400,
)


def _hostile(value: bytes) -> list[bytes]:
    obj = orjson.loads(value)
    found: list[bytes] = []
    # Duplicates whose re-encoding is identical, at every level, and ones that only
    # collide once `\u0069d` is read as `id`.
    for holder, where in ((obj["data"], b'"data":'), (obj["data"].get("patient"), b'"patient":')):
        if not isinstance(holder, dict):
            continue
        for key, item in holder.items():
            escaped = f"\\u{ord(key[0]):04x}{key[1:]}".encode()
            found += [
                _with_member(value, where, b'"' + key.encode() + b'":' + orjson.dumps(item)),
                _with_member(value, where, b'"' + escaped + b'":' + orjson.dumps(item)),
                value.replace(where + b'{"' + key.encode() + b'":', where + b'{"' + escaped + b'":', 1),
            ]
    for key, item in obj.items():
        escaped = f"\\u{ord(key[0]):04x}{key[1:]}".encode()
        found += [
            b'{"' + key.encode() + b'":' + orjson.dumps(item) + b"," + value[1:],
            b'{"' + escaped + b'":' + orjson.dumps(item) + b"," + value[1:],
            value.replace(b'"' + key.encode() + b'":', b'"' + escaped + b'":', 1),
        ]
    found += [
        orjson.dumps(dict(reversed(list(obj.items())))),
        orjson.dumps(obj, option=orjson.OPT_SORT_KEYS),
        b"\xef\xbb\xbf" + value,
        value + b" ",
        value + b"{}",
        value.replace(b'"application/json"', b'"application\\/json"'),
        value.replace(b'"application/json"', b'"\\u0061pplication/json"'),
    ]
    for literal in _LITERALS:
        found.append(value[:-1] + b',"x":' + literal + b"}")
        found.append(_with_member(value, b'"data":', b'"x":' + literal))
    # Around 1023/1024 bytes (where the comma count starts) with as many values as fit.
    for size in range(1019, 1029):
        filler = size - len(value) - len(b',"x":[]')
        items = b",".join([b"0"] * max(1, (filler + 1) // 2))
        found.append(value[:-1] + b',"x":[' + items + b"]}")
        found.append(_with_member(value, b'"data":', b'"x":[' + items + b"]"))
    found += [orjson.dumps({**obj, "time": text}) for text in _ODD_TIMES]
    return found


_CORPUS = (
    [value for example in _EXAMPLES for value in _hostile(example)]
    + [
        shape
        for depth in (254, 255, 256, 1024, 1025)
        for shape in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth)
    ]
    + [b"[" + b",".join([item] * n) + b"]" for n in range(509, 516) for item in (b"0", b"[]", b"{}")]
)


def test_the_hostile_corpus_is_decided_alike() -> None:
    for value in _CORPUS:
        for headers in (None, [], [("x", None)]):
            _same(value, headers)
        _same(bytearray(value))
        _same(memoryview(value))
