"""Write `corpus.jsonl.gz`: hostile and valid inputs and how the codec of commit c713fe8 decided them.

Run from the repository root: `.venv/bin/python tests/data/codec_golden/make_golden.py`.

The codec before issue 12 is taken from git (`git show c713fe8:contracts/<name>.py` for
every contracts module) into a temporary package `oldcontracts`, so the tree holds no
second copy of it. The inputs are drawn with hypothesis from a fixed seed (the
same inputs on every run) plus a hand-made hostile corpus; each line of the output is
one JSON object:

- `{"kind": "parse", "group": ..., "value": base64, "as": "bytes" | "bytearray" |
  "memoryview" | "str", "headers": null | [[name, base64 or null], ...], "outcome": ...}`
  where the outcome is `["accepted", type name, base64 of to_bytes, fields]` (fields:
  `[dotted name, Python type name, time held in UTC or null]` at every level) or
  `["refused", stage, reason]`;
- `{"kind": "cpr" | "url", "value": ..., "outcome": ...}`: the `Patient.cpr` and
  `HttpsUrl` validators alone, `["accepted", ...]` or `["refused", [[type, msg], ...]]`.

`tests/unit/test_codec_golden.py` checks the current codec against it.
"""

from __future__ import annotations

import base64
import gzip
import importlib
import json
import random
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from contracts import Message, example_messages, to_binary, to_bytes
from tests.unit.test_codec_golden import fields_of
from tests.unit.test_contracts_parse import cpr_texts, header_lists, messages

OLD_COMMIT = "c713fe8"
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
OUTPUT = HERE / "corpus.jsonl.gz"
SEED = 20261128  # hypothesis draws from it, not from the source text as `derandomize` would

Value = bytes | bytearray | memoryview | str
Headers = list[tuple[str, bytes | None]] | None


# --- the old codec, from git -------------------------------------------------------------------


def _old_contracts(into: Path) -> ModuleType:
    """The contracts package of OLD_COMMIT as `oldcontracts` in `into`; its parse module."""
    package = into / "oldcontracts"
    package.mkdir()
    listing = subprocess.run(
        ["git", "ls-tree", "--name-only", OLD_COMMIT, "contracts/"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for name in listing:
        if not name.endswith(".py"):
            continue
        text = subprocess.run(
            ["git", "show", f"{OLD_COMMIT}:{name}"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        text = re.sub(r"^(\s*)(from|import) contracts\b", r"\1\2 oldcontracts", text, flags=re.MULTILINE)
        (package / Path(name).name).write_text(text, encoding="utf-8")
    sys.path.insert(0, str(into))
    return importlib.import_module("oldcontracts.parse")


# --- recording -----------------------------------------------------------------------------------


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


class Recorder:
    def __init__(self, old: ModuleType) -> None:
        self.old = old  # the old parse module
        self.lines: list[dict[str, Any]] = []

    def parse(
        self, group: str, value: bytes, headers: Headers = None, shapes: Iterable[str] = ("bytes",)
    ) -> None:
        for shape in shapes:
            handed: Value = value
            if shape == "bytearray":
                handed = bytearray(value)
            elif shape == "memoryview":
                handed = memoryview(value)
            elif shape == "str":
                try:
                    handed = value.decode("utf-8")
                except UnicodeDecodeError:
                    continue
            try:
                message = self.old.parse(handed, headers)
            except self.old.ParseError as exc:
                outcome: list[Any] = ["refused", exc.stage, exc.reason]
            else:
                written = self.old.to_bytes(message)
                outcome = ["accepted", type(message).__name__, _b64(written), fields_of(message)]
            self.lines.append(
                {
                    "kind": "parse",
                    "group": group,
                    "value": _b64(value),
                    "as": shape,
                    "headers": None
                    if headers is None
                    else [[n, None if v is None else _b64(v)] for n, v in headers],
                    "outcome": outcome,
                }
            )

    def validator(self, kind: str, check: Callable[[Any], Any], value: object) -> None:
        try:
            result = check(value)
        except ValidationError as exc:
            errors = [[e["type"], e["msg"]] for e in exc.errors(include_url=False, include_input=False)]
            outcome: list[Any] = ["refused", errors]
        else:
            outcome = ["accepted", *result]
        self.lines.append({"kind": kind, "value": value, "outcome": outcome})


def _drawn(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """`count` examples of `strategy`, the same ones on every run."""
    found: list[Any] = []

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @seed(SEED)
    @given(strategy)
    def collect(example: Any) -> None:
        found.append(example)

    collect()
    return found


# --- mutations (as the oracle test of issue 12 drew them) ---------------------------------------

TIME_TEXTS = st.sampled_from(
    [
        "2026-11-26T09:30:00Z", "2026-11-26T09:30:00.123456Z", "2026-11-26T09:30:00.1234567Z",
        "2026-11-26t09:30:00z", "2026-11-26T09:30:00+02:00", "2026-11-26T09:30:00-23:59",
        "2026-11-26T09:30:00+24:00", "2026-11-26 09:30:00Z", "2026-11-26T09:30:00", "2026-11-26T09:30Z",
        "2026-02-30T09:30:00Z", "2026-13-01T09:30:00Z", "2026-11-26T24:00:00Z", "2026-11-26T23:59:60Z",
        "1999-12-31T23:59:59Z", "2000-01-01T00:30:00+01:00", "2099-12-31T23:59:59.999999Z",
        "2099-12-31T23:30:00-01:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
        "1764149400", "",
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
)  # fmt: skip
TEXTS = st.sampled_from(
    [
        "", " ", "x", "a b", "0101901234", "010190-1234", "3213990000", "1234567890",
        "patient 0101901234 here", "ref-010190-1234", "application/json", "application/json; charset=utf-8",
        "application/json; x=0101901234", "application/json;0101901234", "text/plain",
        "urn:prik:minlaege-video", "urn:prik:A", "1.0", "0.3", "https://video.example.dk/room/1",
        "http://video.example.dk/room/1", "https://", "https://user@:443/x", "https://[::1/x",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "vendor=abc,other=0101901234", "101", "100", "860", "861", "0101", "123456789012345", "normal",
        "urgent", "joined", "received", "delivered", "3b0f7c2e-6a51-4d0e-9c1a-0d6f2b7e4a11", "not-a-uuid",
        "dk.prik.task.status.v1", "x" * 201, "\x00", "\ud800",
    ]
)  # fmt: skip
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    TEXTS,
    TIME_TEXTS,
    cpr_texts(),
    st.lists(st.integers(0, 9), max_size=3),
    st.dictionaries(st.sampled_from(["cpr", "x", "0101901234"]), cpr_texts() | st.integers(), max_size=2),
)
KNOWN_NAMES = [
    "id", "source", "type", "time", "specversion", "datacontenttype", "recipient", "expiresat",
    "correlationid", "priority", "subject", "traceparent", "tracestate", "partitionkey", "data",
    "patient", "cpr", "waiting_since", "due", "at", "consultation_url", "municipality_code",
    "message_id", "position", "attempts", "task_id", "colour", "0101901234",
]  # fmt: skip


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


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    message = draw(messages)
    obj = orjson.loads(to_bytes(message))
    pick = random.Random(draw(st.integers(0, 2**32)))  # paths uniformly, not hypothesis' favourites
    for _ in range(draw(st.integers(1, 3))):
        path = pick.choice(_paths(obj) or [("id",)])
        parent = _parent(obj, path)
        if parent is None:
            continue
        action = pick.choice(["drop", "set", "set", "set", "time", "add"])
        if action == "drop":
            parent.pop(path[-1], None)
        elif action == "set":
            parent[path[-1]] = draw(ODD_VALUES)
        elif action == "time":
            for name in ("time", "expiresat", "waiting_since", "due", "at"):
                for holder in (obj, obj.get("data")):
                    if isinstance(holder, dict) and name in holder:
                        holder[name] = draw(TIME_TEXTS)
        else:
            parent[pick.choice(KNOWN_NAMES)] = draw(ODD_VALUES)
    try:
        value = orjson.dumps(obj)
    except orjson.JSONEncodeError:
        return to_bytes(message)
    return _reshaped(value, obj, pick, draw(ODD_VALUES))


def _reshaped(value: bytes, obj: dict[str, Any], pick: random.Random, odd: object) -> bytes:
    """The same JSON as other bytes: canonical, indented, or with a duplicated key at the top or in data."""
    shape = pick.choice(["canonical", "canonical", "canonical", "indented", "duplicate", "duplicate-in-data"])
    if shape == "indented":
        return orjson.dumps(obj, option=orjson.OPT_INDENT_2)
    try:
        repeated = orjson.dumps(odd)
    except orjson.JSONEncodeError:  # a lone surrogate
        repeated = b"null"
    member = b'"' + pick.choice(KNOWN_NAMES).encode() + b'":' + repeated + b","
    if shape == "duplicate":
        return b"{" + member + value[1:]
    if shape == "duplicate-in-data":
        return value.replace(b'"data":{"', b'"data":{' + member + b'"', 1)
    return value


# --- the hand-made hostile corpus -----------------------------------------------------------------

LITERALS = (b"NaN", b"-Infinity", b"1e400", b"1" * 30, b'"\\ud800"', b'"\xed\xa0\x80"')
ODD_TIMES = (
    "2026-11-26T23:59:60Z",
    "2026-11-26T09:30:00.1234567+05:45",
    "1999-12-31T23:59:59Z",
    "2099-12-31T23:59:59-00:01",
    "2026-11-26T09:30:00",
    "\uff12\uff10\uff12\uff16-11-26T09:30:00Z",  # full-width digits
    1764149400,
)
EDGES = [
    b"", b"{", b"[]", b"null", b'{"specversion":"1.0"}', b'{"type":"dk.prik.task.status.v1"}',
    b"[" + b"0," * 510 + b"0]", b"[" + b"0," * 511 + b"0]", b"[" + b"0," * 512 + b"0]",
    b'{"a":[' + b"0," * 600 + b'0],"a":1}', b"[" + b"[]," * 300 + b"[]]", b'{"id":"a","id":"a"}',
]  # fmt: skip


def _with_member(value: bytes, where: bytes, member: bytes) -> bytes:
    """`value` with `member` ("key":value) first inside the object that opens at `where`."""
    return value.replace(where + b"{", where + b"{" + member + b",", 1)


def hostile(value: bytes) -> list[bytes]:
    obj = orjson.loads(value)
    found: list[bytes] = []
    # Duplicates that re-encode identically, at every level, and ones that collide only after unescaping.
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
    for literal in LITERALS:
        found.append(value[:-1] + b',"x":' + literal + b"}")
        found.append(_with_member(value, b'"data":', b'"x":' + literal))
    # Around 1023/1024 bytes (where the comma count starts) with as many values as fit.
    for size in range(1019, 1029):
        filler = size - len(value) - len(b',"x":[]')
        items = b",".join([b"0"] * max(1, (filler + 1) // 2))
        found.append(value[:-1] + b',"x":[' + items + b"]}")
        found.append(_with_member(value, b'"data":', b'"x":[' + items + b"]"))
    found += [orjson.dumps({**obj, "time": text}) for text in ODD_TIMES]
    return found


def hostile_corpus() -> list[bytes]:
    examples = [to_bytes(message) for message in example_messages().values()]
    return (
        [value for example in examples for value in hostile(example)]
        + [
            shape
            for depth in (254, 255, 256, 1024, 1025)
            for shape in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth)
        ]
        + [b"[" + b",".join([item] * n) + b"]" for n in range(509, 516) for item in (b"0", b"[]", b"{}")]
    )


CPR_INPUTS = (
    cpr_texts()
    | st.text(st.sampled_from("0123456789-"), max_size=12)
    | st.sampled_from(
        ["", "3213990000", "0113901234", "3002901234", "2902001234", "010190_1234", "٠١٠١٩٠١٢٣٤"]
    )
    | st.integers()
    | st.none()
)
URL_TAILS = st.text(st.sampled_from("aZ09.-/?#:@[]%_~"), max_size=16)
URL_INPUTS = (
    URL_TAILS.map(lambda tail: "https://" + tail) | URL_TAILS.map(lambda tail: "http://" + tail) | TEXTS
)


# --- the corpus ---------------------------------------------------------------------------------


def record(old: ModuleType) -> list[dict[str, Any]]:
    recorder = Recorder(old)
    every = ("bytes", "bytearray", "memoryview", "str")
    message: Message
    for message in _drawn(messages, 300):
        value = to_bytes(message)
        recorder.parse("valid", value, None, every)
        recorder.parse("valid", value, [])
        binary, headers = to_binary(message)
        recorder.parse("binary", binary, list(headers), ("bytes", "memoryview"))
    for value in _drawn(mutated(), 3000):
        recorder.parse("mutated", value)
    edits = st.lists(st.tuples(st.sampled_from(["ce_time", "ce_id", "ce_subject"]), TEXTS | TIME_TEXTS))
    for message, changes in _drawn(st.tuples(messages, edits), 400):
        binary, headers = to_binary(message)
        for name, text in changes:
            headers = [(n, v) for n, v in headers if n != name]
            headers.append((name, text.encode("utf-8", "surrogatepass")))
        recorder.parse("binary-edited", binary, list(headers), ("bytes", "memoryview"))
    # Kafka headers as clients hand them: odd names and values, null values among them.
    nulls = st.lists(
        st.tuples(st.sampled_from(["ce_subject", "ce_time", "ce_id", "content-type"]), st.none())
    )
    for message, extra, absent in _drawn(st.tuples(messages, header_lists, nulls), 200):
        binary, headers = to_binary(message)
        recorder.parse("binary-headers", binary, [*headers, *absent, *extra])
        recorder.parse("binary-headers", to_bytes(message), [*extra, *absent])
    for value in EDGES:
        recorder.parse("edges", value, None, every)
    kinds_of_headers: tuple[Headers, ...] = (None, [], [("x", None)])
    for value in hostile_corpus():
        for handed_headers in kinds_of_headers:
            recorder.parse("hostile", value, handed_headers)
        recorder.parse("hostile", value, None, ("bytearray", "memoryview", "str"))

    identifiers = importlib.import_module("oldcontracts.identifiers")
    patient = identifiers.Patient
    for value in _drawn(CPR_INPUTS, 600):

        def check_cpr(v: object) -> list[Any]:
            cpr = patient.model_validate({"cpr": v}).__dict__["cpr"]
            return [type(cpr).__name__, cpr.value, str(cpr)]

        recorder.validator("cpr", check_cpr, value)
    url = TypeAdapter(identifiers.HttpsUrl)
    for value in _drawn(URL_INPUTS, 600):
        recorder.validator("url", lambda v: [url.validate_python(v)], value)
    return recorder.lines


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lines = record(_old_contracts(Path(tmp)))
    text = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
    OUTPUT.write_bytes(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))


if __name__ == "__main__":
    main()
