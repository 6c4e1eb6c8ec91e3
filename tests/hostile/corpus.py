"""The hostile corpus: records no sender should write, mixed with a few every sender does write.

Two kinds of generator live here:

- `hostile_records(seed, n, now)` and `delivery_records(seed, n, now)`: explicit,
  deterministic lists (a `random.Random(seed)` and a fixed `now`) for the
  real-Kafka campaign. Each record says which outcomes the contract allows for it
  (`expect`), and under which message id it would be routed or receipted.
- `arbitrary_records()` and friends: hypothesis strategies for property tests.

Every CPR used here is one of `CPRS`, so `cpr_leaks` can look for exactly those in
logs, dead-letter reasons and receipts.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

__all__ = [
    "CLINIC",
    "CPRS",
    "DEAD",
    "DELIVERED",
    "DUPLICATE",
    "EXPIRED",
    "GHOST",
    "KAFKA_REFUSED",
    "KOMMUNE",
    "LPS",
    "OTHER_CLINIC",
    "OTHER_LPS",
    "ROUTED",
    "SKIPPED",
    "VIDEO",
    "HostileRecord",
    "arbitrary_headers",
    "arbitrary_records",
    "cpr_leaks",
    "delivery_records",
    "hand_written",
    "hostile_records",
]

# The world of tests/integration/conftest.py and tests/data/tenants.toml.
CLINIC = "123456789012"  # served by lps-xmo
OTHER_CLINIC = "223456789012"  # served by lps-other
UNKNOWN_CLINIC = "999999999999"
VIDEO = "minlaege-video"
KOMMUNE = "kommune-0101"
LPS = "lps-xmo"
OTHER_LPS = "lps-other"
GHOST = "ghost-tenant"  # an ingress topic that exists but belongs to no tenant

VIDEO_TYPE = "dk.prik.advisory.video-queue.v1"
REFERRAL_TYPE = "dk.prik.advisory.referral-status.v1"
TASK_TYPE = "dk.prik.task.request.v1"
STATUS_TYPE = "dk.prik.task.status.v1"
RECEIPT_TYPE = "dk.prik.receipt.v1"
STRUCTURED = ("content-type", b"application/cloudevents+json")

# Syntactically valid CPR numbers (valid day and month), with and without the dash.
CPRS = ("0101901234", "150285-4321", "2902001234", "3112999876", "010203-0405")
_CPR_DIGITS = frozenset(c.replace("-", "") for c in CPRS)
_CPR_SHAPE = re.compile(rb"(?<![0-9])([0-9]{6})-?([0-9]{4})(?![0-9])")

# Outcomes of an ingress record (the router) ...
ROUTED = "routed"  # on a delivery topic (or forwarded to a replies topic)
DEAD = "dead-lettered"  # on the dead-letter topic, found by its original topic/partition/offset
EXPIRED = "expired"  # no output but an `expired` receipt to its sender
DUPLICATE = "duplicate"  # dropped as a re-send of a message already routed
KAFKA_REFUSED = "kafka-refused"  # the broker refused to store it: nobody ever reads it
# ... and of a record put straight onto a delivery topic (a consumer).
DELIVERED = "delivered"
SKIPPED = "skipped"  # a receipt on a delivery topic: not for a clinic, no receipt about a receipt

MAX_MESSAGE_BYTES = 64 * 1024


def cpr_leaks(text: bytes | str) -> list[str]:
    """The corpus CPR numbers found in `text` (any digit run of CPR shape that is one of ours)."""
    raw = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    return [m[1].decode() + m[2].decode() for m in _CPR_SHAPE.finditer(raw) if m[1] + m[2] in _CPR_BYTES]


_CPR_BYTES = frozenset(d.encode() for d in _CPR_DIGITS)


@dataclass(frozen=True)
class HostileRecord:
    """One Kafka record to send, and what the contract allows to become of it."""

    category: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    tenant: str = VIDEO  # whose ingress topic it goes to (ignored for delivery records)
    expect: frozenset[str] = frozenset({DEAD})
    message_id: str | None = None  # the id it is routed, receipted or delivered under, if any
    note: str = ""

    @property
    def size(self) -> int:
        headers = sum(len(k) + len(v or b"") for k, v in self.headers)
        return len(self.key or b"") + len(self.value or b"") + headers


# --- JSON with the shapes a JSON library will not write --------------------------------------


class Pairs(list[tuple[str, Any]]):
    """A JSON object as (name, value) pairs: names may repeat."""


@dataclass(frozen=True)
class Raw:
    """A JSON token written as is: NaN, 1e400, a lone surrogate escape, ..."""

    text: str


def encode(value: Any) -> bytes:
    """JSON bytes, ASCII only (non-ASCII and surrogates escaped), duplicates and raw tokens kept."""
    return _encode(value).encode("ascii")


def _encode(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        value = Pairs(value.items())
    if isinstance(value, Pairs):
        return "{" + ",".join(f"{json.dumps(k)}:{_encode(v)}" for k, v in value) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    return json.dumps(value)


def binary(envelope: dict[str, Any]) -> tuple[bytes, list[tuple[str, bytes | None]]]:
    """Binary mode: `ce_*` headers for the attributes, content-type, the data JSON as value."""
    headers: list[tuple[str, bytes | None]] = []
    for name, v in envelope.items():
        if name in ("data", "datacontenttype"):
            continue
        headers.append((f"ce_{name}", str(v).encode()))
    headers.append(("content-type", str(envelope.get("datacontenttype", "application/json")).encode()))
    return encode(envelope.get("data")), headers


# --- valid messages, as dicts to spoil -------------------------------------------------------


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Bases:
    """Fresh valid envelopes (new ids each time) from one seeded generator."""

    def __init__(self, rng: random.Random, now: datetime) -> None:
        self.rng = rng
        self.now = now
        self.count = 0

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def cpr(self) -> str:
        return self.rng.choice(CPRS)

    def video(self, clinic: str = CLINIC, tenant: str = VIDEO) -> dict[str, Any]:
        self.count += 1
        return {
            "specversion": "1.0",
            "id": self.new_id(),
            "source": f"urn:prik:{tenant}",
            "type": VIDEO_TYPE,
            "time": _iso(self.now),
            "datacontenttype": "application/json",
            "recipient": clinic,
            "priority": self.rng.choice(["normal", "urgent"]),
            "data": {
                "queue_entry_id": f"q-{self.count}",
                "event": self.rng.choice(["joined", "left", "called"]),
                "patient": {"cpr": self.cpr()},
                "position": self.rng.randint(1, 40),
                "waiting_since": _iso(self.now - timedelta(minutes=2)),
                "consultation_url": f"https://video.example/{self.count}",
            },
        }

    def referral(self, clinic: str = CLINIC, tenant: str = KOMMUNE) -> dict[str, Any]:
        self.count += 1
        return {
            "specversion": "1.0",
            "id": self.new_id(),
            "source": f"urn:prik:{tenant}",
            "type": REFERRAL_TYPE,
            "time": _iso(self.now),
            "recipient": clinic,
            "expiresat": _iso(self.now + timedelta(days=2)),
            "data": {
                "referral_id": f"r-{self.count}",
                "municipality_code": "101",
                "offer": "TeleKOL",
                "status": self.rng.choice(["received", "accepted", "started"]),
                "patient": {"cpr": self.cpr()},
            },
        }

    def task(self, clinic: str = CLINIC, tenant: str = KOMMUNE) -> dict[str, Any]:
        self.count += 1
        return {
            "specversion": "1.0",
            "id": self.new_id(),
            "source": f"urn:prik:{tenant}",
            "type": TASK_TYPE,
            "time": _iso(self.now),
            "recipient": clinic,
            "data": {
                "task_id": self.new_id(),
                "code": "KOL-TELE",
                "description": "Opfølgning efter udskrivelse",
                "patient": {"cpr": self.cpr()},
            },
        }

    def any_valid(self) -> tuple[dict[str, Any], str]:
        """A valid message and the tenant that may send it."""
        kind = self.rng.randrange(3)
        if kind == 0:
            return self.video(), VIDEO
        if kind == 1:
            return self.referral(), KOMMUNE
        return self.task(), KOMMUNE


def _record(
    category: str,
    envelope: dict[str, Any] | None,
    *,
    value: bytes | None = None,
    key: bytes | None = CLINIC.encode(),
    headers: Iterable[tuple[str, bytes | None]] = (STRUCTURED,),
    tenant: str = VIDEO,
    expect: Iterable[str] = (DEAD,),
    message_id: str | None = None,
    note: str = "",
) -> HostileRecord:
    if value is None and envelope is not None:
        value = encode(envelope)
    if message_id is None and envelope is not None and isinstance(envelope.get("id"), str):
        message_id = envelope["id"]
    return HostileRecord(category, key, value, list(headers), tenant, frozenset(expect), message_id, note)


def _with(envelope: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `envelope` with the field at dotted `path` set (or removed, for `_MISSING`)."""
    copy = json.loads(json.dumps(envelope))
    *parents, last = path.split(".")
    node = copy
    for part in parents:
        node = node[part]
    if value is _MISSING:
        node.pop(last, None)
    else:
        node[last] = value
    return copy  # type: ignore[no-any-return]


_MISSING = object()


def _pairs(obj: dict[str, Any], dup: str, first: Any) -> Pairs:
    """`obj` as pairs with `dup` written twice: `first`, then the real value."""
    out = Pairs()
    for k, v in obj.items():
        if k == dup:
            out.append((k, first))
        out.append((k, v))
    return out


# --- hand-written cases ------------------------------------------------------------------------


def hand_written(rng: random.Random, now: datetime) -> list[HostileRecord]:
    """Every hand-written case once, for the router's ingress."""
    b = Bases(rng, now)
    out: list[HostileRecord] = []
    add = out.append

    # Valid messages, structured and binary, from each producer: these must be routed.
    for _ in range(6):
        env, tenant = b.any_valid()
        add(_record("valid", env, tenant=tenant, expect={ROUTED}))
    for _ in range(3):
        env = b.video()
        value, headers = binary(env)
        add(_record("valid", env, value=value, headers=headers, expect={ROUTED}, note="binary"))
    add(_record("valid", b.video(OTHER_CLINIC), key=OTHER_CLINIC.encode(), expect={ROUTED}))
    env = _with(b.referral(), "data.offer", "TeleKOL æøå \U0001f600")
    add(_record("valid", env, tenant=KOMMUNE, expect={ROUTED}, note="non-ASCII escaped, a surrogate pair"))
    env = _with(b.video(), "data.position", 2**63 - 1)
    add(_record("valid", env, expect={ROUTED}, note="largest int64 position"))
    env = b.video()
    add(
        _record(
            "valid",
            env,
            value=encode(env) + b" " * (MAX_MESSAGE_BYTES - len(encode(env))),
            expect={ROUTED, KAFKA_REFUSED},
            note="exactly 64 KiB, padded with JSON whitespace",
        )
    )

    # Deliberate duplicates: the same message twice on the same key (so the same partition).
    for _ in range(3):
        env = b.video()
        add(_record("duplicate", env, expect={ROUTED, DUPLICATE}))
        add(_record("duplicate", env, expect={ROUTED, DUPLICATE}))

    # Null header values (legal in Kafka): absent, so a valid message still goes through.
    null_headers: list[list[tuple[str, bytes | None]]] = [
        [("content-type", None)],
        [STRUCTURED, ("x-trace", None)],
        [("ce_specversion", None), STRUCTURED],
        [(f"h{i}", None) for i in range(5)],
        [("", None), ("traceparent", None)],
    ]
    for headers in null_headers:
        add(_record("null-header-value", b.video(), headers=headers, expect={ROUTED}))
    env = b.video()
    value, headers = binary(env)
    add(
        _record(
            "null-header-value",
            env,
            value=value,
            headers=[*headers, ("ce_subject", None)],
            expect={ROUTED},
            note="binary, optional ce_ header null",
        )
    )
    for attr in ("id", "source", "type", "time", "specversion"):
        env = b.video()
        value, headers = binary(env)
        nulled = [(k, None if k == f"ce_{attr}" else v) for k, v in headers]
        # Without ce_specversion the record is structured mode, and its value is no envelope.
        add(_record("binary-null-ce", env, value=value, headers=nulled, note=f"ce_{attr} null"))

    # Null keys and values.
    for _ in range(3):
        env, tenant = b.any_valid()
        add(_record("null-key", env, key=None, tenant=tenant, expect={ROUTED}))
    bare: list[list[tuple[str, bytes | None]]] = [
        [],
        [STRUCTURED],
        [("ce_specversion", b"1.0")],
        [("x", None)],
    ]
    for headers in bare:
        add(_record("null-value", None, value=None, headers=headers))
    env = b.video()
    _, headers = binary(env)
    add(_record("null-value", env, value=None, headers=headers, note="binary mode, no data"))
    add(_record("null-value", None, value=None, key=None, headers=[("x", None)], note="all null"))

    _bad_times(b, add)
    _duplicated_keys(b, add)
    _oversize(b, add)
    _nesting(b, add)
    _encoding(b, add)
    _numbers(b, add)
    _binary_mode(b, add)
    _cpr_outside_data(b, add)
    _unknown_attributes(b, add)
    _wrong_types(b, add)
    _not_an_object(add)
    _parties(b, add)
    return out


def _bad_times(b: Bases, add: Callable[[HostileRecord], None]) -> None:
    bad = [
        "9999-12-31T23:59:00Z",
        "9999-12-31T23:59:59.999999Z",
        "9999-12-31T23:59:59-01:00",
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",
        "1999-12-31T23:59:59Z",
        "1970-01-01T00:00:00Z",
        "2100-01-01T00:00:00Z",
        "2026-01-01T10:00:00",  # no time zone
        "2026-01-01 10:00:00Z",
        "2026-02-30T10:00:00Z",
        "2026-01-01T25:00:00Z",
        "2026-06-30T23:59:60Z",
        "garbage",
        "",
        "2026-01-01T10:00:00." + "9" * 40 + "Z",
        "2026-01-01T10:00:00.1234567890Z",
        "+002026-01-01T10:00:00Z",
    ]
    for text in bad:
        add(_record("bad-time", _with(b.video(), "time", text), note=f"time {text[:40]}"))
    not_text: list[Any] = [1764149400, 1.7e9, True, None, [], {}, Raw("1e400")]
    for junk in not_text:
        add(_record("bad-time", _with(b.video(), "time", junk), note=f"time {junk!r}"))
    # The crash loop of issue 7: a video-queue notice in year 9999 without expiresat.
    env = _with(b.video(), "time", "9999-12-31T23:59:00Z")
    value, headers = binary(env)
    add(_record("bad-time", env, value=value, headers=headers, note="binary, time 9999, no expiresat"))
    absurd: list[Any] = [
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        "2100-01-01T00:00:00Z",
        "1999-01-01T00:00:00Z",
        "garbage",
        4102444800,
    ]
    for t in absurd:
        add(
            _record(
                "bad-time",
                _with(b.referral(), "expiresat", t),
                tenant=KOMMUNE,
                note=f"time fine, expiresat {t}",
            )
        )
    add(
        _record(
            "bad-time",
            _with(b.video(), "expiresat", "9999-12-31T23:59:59Z"),
            note="video-queue, expiresat 9999",
        )
    )
    # Times inside data: not the envelope's rule, but they must not break anything either.
    add(
        _record(
            "bad-time",
            _with(b.video(), "data.waiting_since", "9999-12-31T23:59:59Z"),
            expect={ROUTED, DEAD},
            note="data.waiting_since 9999",
        )
    )
    add(
        _record(
            "bad-time",
            _with(b.task(), "data.due", "0001-01-01T00:00:00Z"),
            tenant=KOMMUNE,
            expect={ROUTED, DEAD},
            note="data.due 0001",
        )
    )
    # In range but long past: expired, never delivered, one `expired` receipt.
    add(_record("expired", _with(b.video(), "time", "2000-01-01T00:00:00Z"), expect={EXPIRED}))
    env = _with(_with(b.referral(), "time", "2001-01-01T00:00:00Z"), "expiresat", "2001-01-02T00:00:00Z")
    add(_record("expired", env, tenant=KOMMUNE, expect={EXPIRED}))
    env = _with(b.video(), "time", "2099-12-31T23:00:00Z")
    add(_record("expired", env, expect={ROUTED}, note="time 2099, in range: not expired, routed"))


def _duplicated_keys(b: Bases, add: Callable[[HostileRecord], None]) -> None:
    # Issue 7's example: routed on the last recipient, another parser reads the first.
    for name in ("recipient", "type", "source", "id", "time", "specversion", "priority"):
        env = b.video()
        first: Any = {
            "recipient": OTHER_CLINIC,
            "type": REFERRAL_TYPE,
            "source": f"urn:prik:{KOMMUNE}",
            "id": b.new_id(),
            "time": "2000-01-01T00:00:00Z",
            "specversion": "1.0",
            "priority": "urgent",
        }[name]
        add(
            _record(
                "duplicate-key",
                None,
                value=encode(_pairs(env, name, first)),
                message_id=env["id"],
                note=f"top-level {name}",
            )
        )
    env = b.video()
    add(
        _record(
            "duplicate-key",
            None,
            value=encode(_pairs(env, "recipient", env["recipient"])),
            message_id=env["id"],
            note="recipient twice, same value",
        )
    )
    env = b.video()
    data = _pairs(env["data"], "event", "left")
    add(
        _record(
            "duplicate-key",
            None,
            value=encode({**env, "data": data}),
            message_id=env["id"],
            note="inside data",
        )
    )
    env = b.video()
    add(
        _record(
            "duplicate-key",
            None,
            value=encode(_pairs(env, "data", {"nonsense": 1})),
            message_id=env["id"],
            note="data twice",
        )
    )
    env = b.video()
    patient = Pairs([("cpr", CPRS[0]), ("cpr", CPRS[1])])
    add(
        _record(
            "duplicate-key",
            None,
            value=encode({**env, "data": {**env["data"], "patient": patient}}),
            message_id=env["id"],
            note="inside data.patient",
        )
    )
    env = b.video()
    extra = {**env["data"], "extra": Pairs([("a", 1), ("a", 2)])}
    add(
        _record(
            "duplicate-key",
            None,
            value=encode({**env, "data": extra}),
            message_id=env["id"],
            note="deeper, unknown member",
        )
    )
    env = b.video()
    _, headers = binary(env)
    dup_data = encode(_pairs(env["data"], "queue_entry_id", "other"))
    add(_record("duplicate-key", env, value=dup_data, headers=headers, note="binary mode data"))
    env = b.video()
    escaped = encode(env).replace(
        b'"recipient"', b'"recipient":"' + OTHER_CLINIC.encode() + b'","recip\\u0069ent"', 1
    )
    add(
        _record(
            "duplicate-key",
            None,
            value=escaped,
            message_id=env["id"],
            note="second recipient spelled with a \\u escape",
        )
    )


def _oversize(b: Bases, add: Callable[[HostileRecord], None]) -> None:
    over = (MAX_MESSAGE_BYTES + 1, 100_000, 300_000, 900_000)
    for size in over:
        env = b.video()
        v = encode(env)
        add(
            _record(
                "oversize-value",
                env,
                value=v + b" " * (size - len(v)),
                expect={DEAD, KAFKA_REFUSED},
                note=f"valid message padded to {size} bytes",
            )
        )
    add(_record("oversize-value", None, value=b"x" * 200_000, expect={DEAD, KAFKA_REFUSED}))
    env = b.video()
    env["data"]["queue_entry_id"] = "q" * 70_000
    add(_record("oversize-value", env, expect={DEAD, KAFKA_REFUSED}, note="one long string"))
    env = b.video()
    wide = {**env, **{f"k{i:x}": 0 for i in range(100_000)}}
    add(
        _record(
            "unknown-keys",
            None,
            value=encode(wide),
            message_id=env["id"],
            expect={DEAD, KAFKA_REFUSED},
            note="100k unknown keys",
        )
    )
    env = b.video()
    add(
        _record(
            "unknown-keys",
            None,
            value=encode({**env, **{f"k{i:x}": 0 for i in range(5_000)}}),
            message_id=env["id"],
            note="5k unknown keys, under 64 KiB",
        )
    )
    env = b.video()
    add(
        _record(
            "unknown-keys",
            None,
            value=encode({**env, "data": {**env["data"], **{f"k{i}": i for i in range(3_000)}}}),
            message_id=env["id"],
            note="3k unknown keys inside data",
        )
    )
    for size in (1_025, 10_000, 100_000):
        env = b.video()
        add(_record("oversize-key", env, key=b"k" * size, note=f"{size}-byte key"))
    for count in (33, 1_000, 10_000):
        env = b.video()
        add(
            _record(
                "many-headers",
                env,
                headers=[STRUCTURED, *((f"x-{i}", b"v") for i in range(count))],
                note=f"{count} headers",
            )
        )
    env = b.video()
    add(_record("many-headers", env, headers=[STRUCTURED, ("x-big", b"h" * 60_000)], note="one 60 KB header"))
    env = b.video()
    add(
        _record(
            "many-headers", env, headers=[STRUCTURED, ("h" * 5_000, b"v")], note="a 5000-char header name"
        )
    )
    env = b.video()
    add(
        _record(
            "many-headers",
            env,
            headers=[STRUCTURED, *((f"x-{i}", b"v" * 1000) for i in range(300))],
            expect={DEAD, KAFKA_REFUSED},
            note="300 KB of headers",
        )
    )


def _nesting(b: Bases, add: Callable[[HostileRecord], None]) -> None:
    add(_record("deep-nesting", None, value=b"[" * 10_000))
    add(_record("deep-nesting", None, value=b"[" * 60_000 + b"]" * 5_000))
    add(_record("deep-nesting", None, value=b'{"a":' * 10_000 + b"1" + b"}" * 10_000))
    add(_record("deep-nesting", None, value=b"[" * 1000 + b"]" * 1000, note="1000 levels, balanced"))
    for depth in (100, 1000, 5000):
        env = b.video()
        env["data"]["extra"] = Raw("[" * depth + "]" * depth)
        add(_record("deep-nesting", env, note=f"{depth} levels inside data"))
    env = b.video()
    env["data"]["patient"] = Raw('{"cpr":' * 500 + f'"{CPRS[0]}"' + "}" * 500)
    add(_record("deep-nesting", env, note="500 levels of patient"))
    env = b.video()
    _, headers = binary(env)
    add(_record("deep-nesting", env, value=b"[" * 20_000, headers=headers, note="binary data"))


def _encoding(b: Bases, add: Callable[[HostileRecord], None]) -> None:
    env = b.video()
    v = encode(env)
    add(
        _record(
            "invalid-utf8",
            env,
            value=v.replace(b"joined", b"join\xffed")
            .replace(b"left", b"l\xffft")
            .replace(b"called", b"c\xfflled"),
        )
    )
    for needle, label in (
        (b"\xed\xa0\x80", "raw surrogate bytes"),
        (b"\xc0\xaf", "overlong encoding"),
        (b"\xe2\x82", "truncated sequence"),
        (b"\xf8\x88\x80\x80\x80", "5-byte sequence"),
        (b"\x00", "NUL"),
    ):
        env = b.video()
        v = encode(env).replace(b'"q-', b'"q-' + needle, 1)
        add(_record("invalid-utf8", env, value=v, note=label))
    for field_path in ("id", "data.queue_entry_id", "data.patient.cpr", "subject"):
        env = b.video()
        env = _with(env, field_path, "x") if field_path == "subject" else env
        v = encode(env)
        current = env
        for part in field_path.split("."):
            current = current[part]
        v = v.replace(json.dumps(current).encode(), b'"\\ud800' + str(current).encode() + b'"', 1)
        add(_record("lone-surrogate", env, value=v, note=f"\\ud800 escaped in {field_path}"))
    env = b.video()
    add(
        _record(
            "lone-surrogate",
            env,
            value=encode(env).replace(b'"recipient"', b'"recipient\\udfff"'),
            note="lone low surrogate in a member name",
        )
    )
    env = b.video()
    add(
        _record(
            "lone-surrogate", env, value=encode(env)[:-1] + b',"\\ud800":1}', note="as a whole member name"
        )
    )
    env = b.video()
    add(
        _record(
            "invalid-utf8",
            env,
            value=b"\xef\xbb\xbf" + encode(env),
            expect={DEAD, ROUTED},
            note="UTF-8 BOM before the JSON",
        )
    )
    env = b.video()
    add(_record("invalid-utf8", env, value=encode(env).decode().encode("utf-16"), note="UTF-16"))
    env = b.video()
    value, headers = binary(env)
    headers = [(k, b"\xff\xfe" if k == "ce_id" else v) for k, v in headers]
    add(_record("invalid-utf8", env, value=value, headers=headers, note="binary ce_id not UTF-8"))
    env = b.video()
    value, headers = binary(env)
    headers = [(k, b"\xed\xa0\x80" if k == "content-type" else v) for k, v in headers]
    add(_record("invalid-utf8", env, value=value, headers=headers, note="binary content-type surrogate"))
    env = b.video()
    add(
        _record(
            "invalid-utf8",
            env,
            headers=[("content-type", b"\xff\xfe"), ("x", b"\x80")],
            expect={ROUTED},
            note="structured mode ignores foreign headers",
        )
    )


def _numbers(b: Bases, add: Callable[[HostileRecord], None]) -> None:
    for token in (
        "NaN",
        "Infinity",
        "-Infinity",
        "1e400",
        "-1e400",
        str(2**80),
        "1" * 400,
        "1.0",
        "0",
        "-1",
        "1e308",
        "-0",
        '"1"',
        "true",
    ):
        add(_record("numbers", _with(b.video(), "data.position", Raw(token)), note=f"position {token[:20]}"))
    add(_record("numbers", None, value=b"NaN"))
    add(_record("numbers", None, value=b"1e400"))
    add(_record("numbers", _with(b.video(), "data.extra", Raw("NaN"))))
    add(_record("numbers", _with(b.video(), "priority", Raw("1e400"))))
    add(_record("numbers", _with(b.referral(), "data.municipality_code", Raw(str(2**80))), tenant=KOMMUNE))
    env = b.video()
    add(
        _record(
            "numbers",
            env,
            value=encode(env).replace(b'"specversion":"1.0"', b'"specversion":1.0'),
            note="specversion as a number",
        )
    )


def _binary_mode(b: Bases, add: Callable[[HostileRecord], None]) -> None:
    for attr in ("id", "source", "type", "time", "recipient"):
        env = b.video()
        value, headers = binary(env)
        add(
            _record(
                "binary-mode",
                env,
                value=value,
                headers=[(k, v) for k, v in headers if k != f"ce_{attr}"],
                note=f"ce_{attr} missing",
            )
        )
    for spec in (b"2.0", b"", b"1.0 ", b"\xff", b"1.0\x00"):
        env = b.video()
        value, headers = binary(env)
        headers = [(k, spec if k == "ce_specversion" else v) for k, v in headers]
        add(_record("binary-mode", env, value=value, headers=headers, note=f"ce_specversion {spec!r}"))
    for attr, junk in (
        ("time", b"yesterday"),
        ("id", b""),
        ("recipient", b"not-a-sor"),
        ("priority", b"\x00"),
        ("type", b"dk.prik.nope"),
        ("source", b"urn:prik:"),
        ("time", b"9999-12-31T23:59:00Z"),
    ):
        env = b.video()
        value, headers = binary(env)
        headers = [(k, junk if k == f"ce_{attr}" else v) for k, v in headers]
        add(_record("binary-mode", env, value=value, headers=headers, note=f"ce_{attr} garbage"))
    for attr in ("id", "type", "specversion", "source"):
        env = b.video()
        value, headers = binary(env)
        twice = [*headers, (f"ce_{attr}", dict(headers)[f"ce_{attr}"])]
        add(_record("binary-mode", env, value=value, headers=twice, note=f"ce_{attr} twice, same value"))
    env = b.video()
    value, headers = binary(env)
    add(
        _record(
            "binary-mode",
            env,
            value=value,
            headers=[*headers, ("CE_ID", b"other-id")],
            note="ce_id twice, differing case",
        )
    )
    env = b.video()
    value, headers = binary(env)
    add(
        _record(
            "binary-mode",
            env,
            value=value,
            headers=[*headers, ("content-type", b"application/json")],
            note="content-type twice",
        )
    )
    env = b.video()
    value, headers = binary(env)
    add(
        _record(
            "binary-mode",
            env,
            value=value,
            headers=[*headers, ("ce_datacontenttype", b"text/plain")],
            note="content-type and ce_datacontenttype disagree",
        )
    )
    env = b.video()
    value, headers = binary(env)
    add(_record("binary-mode", env, value=value, headers=[*headers, ("ce_data", b"{}")], note="ce_data"))
    env = b.video()
    _, headers = binary(env)
    add(_record("binary-mode", env, value=encode(env), headers=headers, note="whole envelope as data"))
    for junk in (b"not json", b"null", b"[]", b"", b'"text"'):
        env = b.video()
        _, headers = binary(env)
        add(_record("binary-mode", env, value=junk, headers=headers, note=f"data {junk!r}"))
    env = b.video()
    value, headers = binary(env)
    headers = [(k, v) for k, v in headers if k != "content-type"] + [("content-type", b"text/plain")]
    add(_record("binary-mode", env, value=value, headers=headers, note="content-type text/plain"))


def _cpr_outside_data(b: Bases, add: Callable[[HostileRecord], None]) -> None:
    cpr, dashed = CPRS[0], CPRS[1]
    for path, value in (
        ("subject", cpr),
        ("subject", f"patient {dashed}"),
        ("id", cpr),
        ("id", dashed),
        ("recipient", cpr),
        ("correlationid", cpr),
        ("correlationid", dashed),
        ("type", cpr),
        ("source", f"urn:prik:{cpr}"),
        ("partitionkey", cpr),
        ("tracestate", f"vendor={cpr}"),
        ("traceparent", cpr),
        ("datacontenttype", f"application/json; cpr={cpr}"),
    ):
        env = _with(b.video(), path, value)
        add(
            _record(
                "cpr-outside-data", env, message_id=None if path == "id" else env["id"], note=f"CPR in {path}"
            )
        )
    env = b.video()
    add(_record("cpr-outside-data", env, value=encode({**env, cpr: "x"}), note="CPR as an attribute name"))
    env = b.video()
    add(
        _record(
            "cpr-outside-data", env, value=encode({**env, f"cpr_{cpr}": "x"}), note="CPR in attribute name"
        )
    )
    env = b.video()
    add(_record("cpr-outside-data", env, value=encode({**env, "x": cpr}), note="CPR in an unknown attribute"))
    env = b.video()
    add(
        _record(
            "cpr-outside-data",
            env,
            value=encode({**env, "data": {**env["data"], dashed: 1}}),
            note="CPR as an unknown member name inside data",
        )
    )
    env = _with(b.video(), "data.patient", cpr)
    add(_record("cpr-outside-data", env, note="patient as a bare CPR string"))
    env = _with(b.video(), "data.patient.cpr", "3213901234")
    add(_record("cpr-outside-data", env, note="CPR-shaped but day 32"))
    # The key and headers: the router keys by clinic and forwards no foreign headers.
    env = b.video()
    add(_record("cpr-outside-data", env, key=cpr.encode(), expect={ROUTED, DEAD}, note="CPR as key"))
    env = b.video()
    add(
        _record(
            "cpr-outside-data",
            env,
            headers=[STRUCTURED, ("x-patient", dashed.encode())],
            expect={ROUTED, DEAD},
            note="CPR in a header value",
        )
    )
    env = b.video()
    add(
        _record(
            "cpr-outside-data",
            env,
            headers=[STRUCTURED, (cpr, b"1")],
            expect={ROUTED, DEAD},
            note="CPR as a header name",
        )
    )
    for attr, value in (("subject", cpr), ("id", dashed), ("correlationid", cpr), ("partitionkey", cpr)):
        env = b.video()
        plain, headers = binary(env)
        if attr == "id":
            headers = [(k, value.encode() if k == "ce_id" else v) for k, v in headers]
        else:
            headers = [*headers, (f"ce_{attr}", value.encode())]
        add(
            _record(
                "cpr-outside-data",
                env,
                value=plain,
                headers=headers,
                message_id=None if attr == "id" else env["id"],
                note=f"binary ce_{attr} CPR",
            )
        )
    env = b.video()
    plain, headers = binary(env)
    add(
        _record(
            "cpr-outside-data",
            env,
            value=plain,
            headers=[*headers, (f"ce_{cpr}", b"1")],
            note="binary: CPR as an attribute name",
        )
    )


def _unknown_attributes(b: Bases, add: Callable[[HostileRecord], None]) -> None:
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    # Documented extensions: accepted and carried.
    add(_record("extensions", _with(b.video(), "traceparent", trace), expect={ROUTED}))
    add(
        _record(
            "extensions",
            _with(_with(b.video(), "traceparent", trace), "tracestate", "congo=t61rcWkgMzE"),
            expect={ROUTED},
        )
    )
    add(_record("extensions", _with(b.video(), "partitionkey", CLINIC), expect={ROUTED}))
    env = _with(_with(b.video(), "traceparent", trace), "partitionkey", "pk-1")
    value, headers = binary(env)
    add(
        _record(
            "extensions", env, value=value, headers=headers, expect={ROUTED}, note="binary, with extensions"
        )
    )
    odd: list[tuple[str, Any]] = [
        ("traceparent", "garbage"),
        ("traceparent", 1),
        ("partitionkey", ""),
        ("partitionkey", {"a": 1}),
        ("tracestate", ["x"]),
        ("traceparent", None),
    ]
    for name, junk in odd:
        add(
            _record(
                "extensions",
                _with(b.video(), name, junk),
                expect={DEAD} if junk is not None else {DEAD, ROUTED},
                note=f"{name} {junk!r}",
            )
        )
    # Anything else is refused.
    for name in ("foo", "dataschema", "comexampleextension", "Recipient", "DATA", "id ", "", "x" * 300):
        env = b.video()
        add(
            _record(
                "unknown-attribute",
                None,
                value=encode({**env, name: "bar"}),
                message_id=env["id"],
                note=f"attribute {name[:20]!r}",
            )
        )
    env = b.video()
    value, headers = binary(env)
    add(
        _record(
            "unknown-attribute",
            env,
            value=value,
            headers=[*headers, ("ce_foo", b"bar")],
            note="binary ce_foo",
        )
    )
    env = b.video()
    add(
        _record(
            "unknown-attribute",
            env,
            value=encode({**env, "data": {**env["data"], "foo": 1}}),
            note="unknown member in data",
        )
    )
    env = b.video()
    add(
        _record(
            "unknown-attribute",
            env,
            value=encode({**env, "data": {**env["data"], "patient": {"cpr": CPRS[2], "name": "x"}}}),
            note="unknown member in data.patient",
        )
    )


def _wrong_types(b: Bases, add: Callable[[HostileRecord], None]) -> None:
    junk_values: list[Any] = [None, 1, 1.5, True, "", [], {}, "x" * 5000, " "]
    video_fields = [
        "specversion",
        "id",
        "source",
        "type",
        "recipient",
        "expiresat",
        "correlationid",
        "priority",
        "subject",
        "datacontenttype",
        "data",
        "data.queue_entry_id",
        "data.event",
        "data.patient",
        "data.patient.cpr",
        "data.position",
        "data.waiting_since",
        "data.consultation_url",
    ]
    rng = b.rng
    for path in video_fields:
        for junk in rng.sample(junk_values, 3):
            env = _with(b.video(), path, junk)
            add(
                _record(
                    "wrong-type",
                    env,
                    expect={DEAD, ROUTED} if _may_be_fine(path, junk) else {DEAD},
                    message_id=None if path == "id" else env["id"],
                    note=f"{path} = {junk!r:.20}",
                )
            )
    for path in ("id", "source", "type", "time", "specversion", "data", "data.queue_entry_id", "data.event"):
        env = _with(b.video(), path, _MISSING)
        add(
            _record("wrong-type", env, message_id=None if path == "id" else env["id"], note=f"{path} missing")
        )
    for path, junk in (
        ("data.municipality_code", "100"),
        ("data.municipality_code", 101),
        ("data.status", "maybe"),
        ("data.offer", ""),
        ("data.patient", None),
    ):
        env = _with(b.referral(), path, junk)
        add(_record("wrong-type", env, tenant=KOMMUNE, note=f"referral {path} = {junk!r}"))
    for path, junk in (
        ("data.task_id", "not-a-uuid"),
        ("data.task_id", 12),
        ("data.code", ""),
        ("data.description", "x" * 5000),
    ):
        env = _with(b.task(), path, junk)
        add(_record("wrong-type", env, tenant=KOMMUNE, note=f"task {path} = {junk!r:.20}"))
    for url in ("http://video.example/1", "javascript:alert(1)", "https://", "https://exa mple.dk/"):
        add(_record("wrong-type", _with(b.video(), "data.consultation_url", url), note=f"url {url}"))


def _may_be_fine(path: str, junk: Any) -> bool:
    """Optional fields set to null may be read as absent; a subject may be a blank."""
    optional = {
        "expiresat",
        "correlationid",
        "subject",
        "data.patient",
        "data.position",
        "data.consultation_url",
    }
    return (junk is None and path in optional) or (path == "subject" and junk == " ")


def _not_an_object(add: Callable[[HostileRecord], None]) -> None:
    for value in (
        b"",
        b" ",
        b"\x00",
        b"{}",
        b"[]",
        b"null",
        b"0",
        b'"string"',
        b"true",
        b"{",
        b"}",
        b"{]",
        b"[{}]",
        b'{"specversion":"1.0"}',
        b"\n\t\r ",
        b"\xff\xfe\xfd",
    ):
        add(_record("not-an-object", None, value=value, note=repr(value)[:30]))


def _parties(b: Bases, add: Callable[[HostileRecord], None]) -> None:
    # Valid messages from the wrong party or to nowhere.
    add(_record("wrong-source", b.video(tenant=KOMMUNE), note="kommune's source on minlaege's topic"))
    add(_record("wrong-source", b.video(tenant="nobody-here"), note="unknown tenant in source"))
    add(_record("wrong-source", b.video(tenant="router"), note="the router's own source"))
    add(_record("wrong-source", b.referral(), tenant=VIDEO, note="kommune's referral on minlaege's topic"))
    add(_record("type-not-allowed", b.referral(tenant=VIDEO), note="minlaege may not send referrals"))
    add(_record("type-not-allowed", b.task(tenant=VIDEO), note="minlaege may not send task requests"))
    add(
        _record(
            "type-not-allowed", b.video(tenant=KOMMUNE), tenant=KOMMUNE, note="kommune may not send video"
        )
    )
    add(_record("type-not-allowed", b.video(tenant=LPS), tenant=LPS, note="an LPS may not send advisories"))
    add(
        _record("unknown-tenant", b.video(tenant=GHOST), tenant=GHOST, note="an ingress topic with no tenant")
    )
    add(_record("unknown-tenant", b.video(), tenant=GHOST, note="a valid message on a tenantless topic"))
    add(_record("unknown-clinic", b.video(UNKNOWN_CLINIC), key=UNKNOWN_CLINIC.encode()))
    add(_record("unknown-clinic", b.task(UNKNOWN_CLINIC), tenant=KOMMUNE))
    env = b.task()
    status = {
        "specversion": "1.0",
        "id": b.new_id(),
        "source": f"urn:prik:{KOMMUNE}",
        "type": STATUS_TYPE,
        "time": env["time"],
        "data": {"task_id": b.new_id(), "status": "cancelled"},
    }
    add(_record("task-unknown", status, key=status["data"]["task_id"].encode(), tenant=KOMMUNE))
    receipt = {
        "specversion": "1.0",
        "id": b.new_id(),
        "source": f"urn:prik:{LPS}",
        "type": RECEIPT_TYPE,
        "time": env["time"],
        "data": {
            "message_id": b.new_id(),
            "message_source": f"urn:prik:{VIDEO}",
            "message_type": VIDEO_TYPE,
            "recipient": OTHER_CLINIC,
            "outcome": "delivered",
            "attempts": 1,
            "at": env["time"],
        },
    }
    add(_record("receipt-not-mine", receipt, tenant=LPS, note="lps-xmo confirms a clinic it does not serve"))


# --- generated cases ---------------------------------------------------------------------------


_JUNK: list[Any] = [
    None,
    0,
    -1,
    2**70,
    1.5,
    "",
    "x",
    " ",
    "\u00e6\u00f8\u00e5",
    [],
    {},
    [1, [2]],
    {"a": {"b": 1}},
    True,
    False,
    "2026-01-01T00:00:00Z",
    CPRS[0],
    "urn:prik:minlaege-video",
]


def _fields(env: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in env.items():
        path = f"{prefix}{k}"
        out.append(path)
        if isinstance(v, dict):
            out.extend(_fields(v, f"{path}."))
    return out


def _mutant(b: Bases) -> HostileRecord:
    """A valid message spoiled at random: a field's type or presence, or its bytes (never its id)."""
    rng = b.rng
    env, tenant = b.any_valid()
    how = rng.randrange(6)
    paths = [p for p in _fields(env) if p != "id"]
    if how == 0:
        path = rng.choice(paths)
        return _record(
            "fuzz-field",
            _with(env, path, rng.choice(_JUNK)),
            tenant=tenant,
            expect={ROUTED, DEAD, EXPIRED},
            note=f"{path} replaced",
        )
    if how == 1:
        path = rng.choice(paths)
        return _record(
            "fuzz-field",
            _with(env, path, _MISSING),
            tenant=tenant,
            expect={ROUTED, DEAD, EXPIRED},
            note=f"{path} removed",
        )
    value = encode(env)
    start = value.index(b'"source"')  # the id comes before it and is never touched
    raw = bytearray(value)
    if how == 2:
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(start, len(raw))
            raw[i] = rng.randrange(256)
        note = "bytes flipped"
    elif how == 3:
        del raw[rng.randrange(start, len(raw)) :]
        note = "truncated"
    elif how == 4:
        i = rng.randrange(start, len(raw))
        raw[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 30)))
        note = "bytes inserted"
    else:
        i, j = sorted(rng.randrange(start, len(raw)) for _ in range(2))
        raw[i:j] = raw[i:j] * rng.randint(2, 5)
        note = "a stretch repeated"
    return _record(
        "fuzz-bytes", env, value=bytes(raw), tenant=tenant, expect={ROUTED, DEAD, EXPIRED}, note=note
    )


def _header_mutant(b: Bases) -> HostileRecord:
    """A valid message with random extra headers: null values, odd names, ce_ noise."""
    rng = b.rng
    env, tenant = b.any_valid()
    if rng.random() < 0.5:
        value, headers = binary(env)
        mode = "binary"
    else:
        value, headers = encode(env), [STRUCTURED]
        mode = "structured"
    extra: list[tuple[str, bytes | None]] = []
    for _ in range(rng.randint(1, 6)):
        name = rng.choice(
            ["x-trace", "ce_foo", "content-type", "", "CE_SUBJECT", "traceparent", "ce_", "h\u00e6"]
        )
        extra.append((name, rng.choice([None, b"", b"\xff", b"1", CPRS[0].encode(), b"application/json"])))
    headers = list(headers)
    for item in extra:
        headers.insert(rng.randrange(len(headers) + 1), item)
    return _record(
        "fuzz-headers",
        env,
        value=value,
        headers=headers,
        tenant=tenant,
        expect={ROUTED, DEAD, EXPIRED},
        note=mode,
    )


def hostile_records(seed: int, n: int, now: datetime) -> list[HostileRecord]:
    """At least `n` ingress records: every hand-written case, then generated ones up to `n`."""
    rng = random.Random(seed)
    records = hand_written(rng, now)
    b = Bases(rng, now)
    while len(records) < n:
        records.append(_mutant(b) if rng.random() < 0.7 else _header_mutant(b))
    return records


# --- records put straight onto a delivery topic ------------------------------------------------

REFUSE_PREFIX = "refuse-"  # the LPS refuses these for good (a 4xx)
FLAKY_PREFIX = "flaky-"  # the LPS fails these once, then takes them


def delivery_records(seed: int, n: int, now: datetime) -> list[HostileRecord]:  # noqa: PLR0915  a catalogue
    """At least `n` records for an LPS's delivery topic, as a stray or broken producer might write them.

    The consumer does not authenticate (the router did), so any readable message is delivered.
    """
    rng = random.Random(seed)
    b = Bases(rng, now)
    out: list[HostileRecord] = []
    add = out.append

    def valid(
        category: str,
        *,
        key: bytes | None = CLINIC.encode(),
        headers: Iterable[tuple[str, bytes | None]] = (STRUCTURED,),
        env: dict[str, Any] | None = None,
        expect: Iterable[str] = (DELIVERED,),
        note: str = "",
    ) -> None:
        env = env or b.any_valid()[0]
        add(_record(category, env, key=key, headers=headers, expect=expect, note=note))

    for _ in range(8):
        valid("valid")
    env = b.video()
    value, headers = binary(env)
    add(_record("valid", env, value=value, headers=headers, expect={DELIVERED}, note="binary"))
    valid("null-header-value", headers=[("content-type", None), ("x", None)])
    valid("null-header-value", headers=[("ce_specversion", None)])
    env = b.video()
    value, headers = binary(env)
    add(
        _record(
            "null-header-value",
            env,
            value=value,
            headers=[*headers, ("ce_subject", None)],
            expect={DELIVERED},
            note="binary",
        )
    )
    valid("null-key", key=None)
    valid("null-key", key=None, env=b.video(OTHER_CLINIC))
    add(_record("null-value", None, value=None, expect={DEAD}))
    add(_record("null-value", None, value=None, key=None, headers=[("x", None)], expect={DEAD}))
    # The crash of issue 7 on the consumer side, and its neighbours.
    for t in ("9999-12-31T23:59:00Z", "0001-01-01T00:00:00Z", "2100-01-01T00:00:00Z", "garbage"):
        add(_record("bad-time", _with(b.video(), "time", t), expect={DEAD}, note=f"time {t}"))
    add(_record("bad-time", _with(b.referral(), "expiresat", "9999-12-31T23:59:59Z"), expect={DEAD}))
    add(_record("expired", _with(b.video(), "time", "2000-01-01T00:00:00Z"), expect={EXPIRED}))
    env = b.video()
    add(
        _record(
            "duplicate-key",
            None,
            value=encode(_pairs(env, "recipient", OTHER_CLINIC)),
            expect={DEAD},
            message_id=env["id"],
        )
    )
    env = b.video()
    patient = Pairs([("cpr", CPRS[0]), ("cpr", CPRS[1])])
    add(
        _record(
            "duplicate-key",
            None,
            value=encode({**env, "data": {**env["data"], "patient": patient}}),
            expect={DEAD},
            message_id=env["id"],
        )
    )
    env = b.video()
    v = encode(env)
    add(
        _record(
            "oversize-value",
            env,
            value=v + b" " * (MAX_MESSAGE_BYTES + 1 - len(v)),
            expect={DEAD, KAFKA_REFUSED},
        )
    )
    add(_record("deep-nesting", None, value=b"[" * 10_000, expect={DEAD}))
    env = b.video()
    add(_record("lone-surrogate", env, value=encode(env).replace(b'"q-', b'"\\ud800q-', 1), expect={DEAD}))
    env = b.video()
    add(_record("invalid-utf8", env, value=encode(env).replace(b'"q-', b'"\xffq-', 1), expect={DEAD}))
    add(_record("numbers", _with(b.video(), "data.position", Raw("1e400")), expect={DEAD}))
    for attr in ("id", "time"):
        env = b.video()
        value, headers = binary(env)
        add(
            _record(
                "binary-null-ce",
                env,
                value=value,
                headers=[(k, None if k == f"ce_{attr}" else v) for k, v in headers],
                expect={DEAD},
            )
        )
    env = b.video()
    value, headers = binary(env)
    add(_record("binary-mode", env, value=value, headers=[*headers, ("ce_id", b"again")], expect={DEAD}))
    for junk in (b"", b"not json", b"[]", b"\xff"):
        add(_record("not-an-object", None, value=junk, expect={DEAD}))
    add(_record("cpr-outside-data", _with(b.video(), "subject", CPRS[0]), expect={DEAD}))
    add(_record("unknown-attribute", _with(b.video(), "foo", "bar"), expect={DEAD}))
    add(
        _record(
            "extensions",
            _with(b.video(), "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            expect={DELIVERED},
        )
    )
    # A stray producer keyed by a CPR: the lane is the key, so nothing may log the key.
    valid("cpr-key", key=CPRS[0].encode())
    env = _with(b.video(), "id", f"{REFUSE_PREFIX}{b.new_id()}")
    add(_record("cpr-key", env, key=CPRS[1].encode(), expect={DEAD}, note="the LPS refuses it"))
    env = _with(b.video(), "id", f"{FLAKY_PREFIX}{b.new_id()}")
    add(_record("cpr-key", env, key=CPRS[2].encode(), expect={DELIVERED}, note="the LPS fails it once"))
    env = _with(b.video(), "id", f"{FLAKY_PREFIX}{b.new_id()}")
    add(_record("flaky", env, expect={DELIVERED}))
    env = _with(b.video(), "id", f"{REFUSE_PREFIX}{b.new_id()}")
    add(_record("refused", env, expect={DEAD}))
    receipt = {
        "specversion": "1.0",
        "id": b.new_id(),
        "source": f"urn:prik:{LPS}",
        "type": RECEIPT_TYPE,
        "time": _iso(now),
        "data": {
            "message_id": b.new_id(),
            "message_source": f"urn:prik:{VIDEO}",
            "message_type": VIDEO_TYPE,
            "recipient": CLINIC,
            "outcome": "delivered",
            "attempts": 1,
            "at": _iso(now),
        },
    }
    add(_record("receipt", receipt, expect={SKIPPED}))
    while len(out) < n:
        mutant = _mutant(b)
        add(replace(mutant, expect=frozenset({DELIVERED, DEAD, EXPIRED})))
    return out


# --- hypothesis strategies ---------------------------------------------------------------------

_header_names = st.one_of(
    st.sampled_from(
        [
            "content-type",
            "ce_specversion",
            "ce_id",
            "ce_source",
            "ce_type",
            "ce_time",
            "ce_recipient",
            "ce_data",
            "CE_SPECVERSION",
            "prik-replay",
            "traceparent",
            "",
        ]
    ),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=20),
)
_header_values = st.one_of(
    st.none(),
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"1.0",
            b"application/json",
            b"application/cloudevents+json",
            CPRS[0].encode(),
            b"2026-01-01T00:00:00Z",
            b"9999-12-31T23:59:00Z",
            b"urn:prik:minlaege-video",
            VIDEO_TYPE.encode(),
            CLINIC.encode(),
        ]
    ),
)


def arbitrary_headers() -> st.SearchStrategy[list[tuple[str, bytes | None]]]:
    """Header lists as a Kafka client hands them over: any names, null values, repeats."""
    return st.lists(st.tuples(_header_names, _header_values), max_size=12)


def _json_values() -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=30),
        st.sampled_from([CPRS[0], CLINIC, "9999-12-31T23:59:00Z", VIDEO_TYPE]),
    )
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
        max_leaves=12,
    )


@st.composite
def _spoiled_envelopes(draw: st.DrawFn) -> bytes:
    """A valid message with some attributes replaced by arbitrary JSON values."""
    bases = Bases(random.Random(draw(st.integers(0, 2**32))), datetime.now(UTC))
    env, _ = bases.any_valid()
    for path in draw(st.lists(st.sampled_from(_fields(env)), max_size=3)):
        try:
            env = _with(env, path, draw(_json_values()))
        except (KeyError, TypeError):
            continue  # a parent was replaced by a non-object
    return encode(env)


def arbitrary_values() -> st.SearchStrategy[bytes | None]:
    """Record values: nothing, any bytes, any JSON, or a valid message spoiled."""
    return st.one_of(
        st.none(),
        st.binary(max_size=300),
        _json_values().map(lambda v: json.dumps(v).encode()),
        _spoiled_envelopes(),
    )


@st.composite
def arbitrary_records(draw: st.DrawFn) -> HostileRecord:
    """Any key, value and headers, on any tenant's ingress topic."""
    return HostileRecord(
        "arbitrary",
        draw(st.one_of(st.none(), st.binary(max_size=40), st.just(CPRS[0].encode()))),
        draw(arbitrary_values()),
        draw(arbitrary_headers()),
        draw(st.sampled_from([VIDEO, KOMMUNE, LPS, OTHER_LPS, GHOST])),
        frozenset({ROUTED, DEAD, EXPIRED, DUPLICATE}),
    )


def by_category(records: Iterable[HostileRecord]) -> Iterator[tuple[str, list[HostileRecord]]]:
    """Records grouped by category, in first-seen order."""
    groups: dict[str, list[HostileRecord]] = {}
    for record in records:
        groups.setdefault(record.category, []).append(record)
    yield from groups.items()
