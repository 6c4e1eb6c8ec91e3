"""The hostile corpus through a pure, in-memory `Router`: no record raises, each gets the verdict it may.

Records enter through `Incoming.from_record`, the path aiokafka records take, so
null header values and null keys arrive exactly as a Kafka client hands them over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings

from broker import Batch, DedupWindow, DirectoryTable, Incoming, Routed, Router, TaskTable
from contracts import Receipt, Topics, codec, parse, parse_tenants, to_bytes
from contracts import headers as h
from tests.hostile.corpus import (
    CLINIC,
    DEAD,
    DUPLICATE,
    EXPIRED,
    KAFKA_REFUSED,
    LPS,
    OTHER_CLINIC,
    OTHER_LPS,
    ROUTED,
    HostileRecord,
    arbitrary_records,
    cpr_leaks,
    hostile_records,
)

TENANTS = parse_tenants((Path(__file__).parent.parent / "data" / "tenants.toml").read_text())
TOPICS = Topics("prik")
SEED = 20260701
_OUTCOMES = {
    "routed": ROUTED,
    "forwarded": ROUTED,
    "rejected": DEAD,
    "expired": EXPIRED,
    "duplicate": DUPLICATE,
}


def make_router(clock: Callable[[], datetime] | None = None) -> Router:
    directory = DirectoryTable()
    directory.apply(CLINIC.encode(), codec.dumps({"lps": LPS}))
    directory.apply(OTHER_CLINIC.encode(), codec.dumps({"lps": OTHER_LPS}))
    if clock is None:
        return Router(TOPICS, lambda: TENANTS, directory, TaskTable(), DedupWindow())
    return Router(TOPICS, lambda: TENANTS, directory, TaskTable(), DedupWindow(), clock=clock)


def incoming(record: HostileRecord, offset: int, partition: int = 0) -> Incoming:
    """As aiokafka hands a record over: header values may be None."""
    raw = SimpleNamespace(
        topic=TOPICS.ingress(record.tenant),
        partition=partition,
        offset=offset,
        key=record.key,
        value=record.value,
        headers=tuple(record.headers),
    )
    return Incoming.from_record(raw)


async def route_all(router: Router, records: list[HostileRecord]) -> list[tuple[Incoming, Routed]]:
    """Each record in a batch of its own, committed before the next (so re-sends are duplicates)."""
    out = []
    for offset, record in enumerate(records):
        batch = Batch()
        rec = incoming(record, offset)
        out.append((rec, await router.route(rec, batch)))
        router.commit(batch)
    return out


@pytest.fixture(scope="module")
def corpus() -> list[HostileRecord]:
    return hostile_records(SEED, 520, datetime.now(UTC))


@pytest.fixture(scope="module")
def routed(corpus: list[HostileRecord]) -> list[tuple[Incoming, Routed]]:
    return asyncio.run(route_all(make_router(), corpus))


def describe(record: HostileRecord, routed: Routed) -> str:
    reason = next(
        (dict(o.headers).get(h.ERROR_REASON) for o in routed.outputs if o.topic == TOPICS.dlq), None
    )
    return f"{record.category} ({record.note}): {routed.verdict} stage={routed.stage} reason={reason!r}"


def test_the_corpus_is_large_and_covers_every_category(corpus: list[HostileRecord]) -> None:
    categories = {r.category for r in corpus}
    assert len(corpus) >= 500
    for needed in (
        "valid",
        "null-header-value",
        "null-key",
        "null-value",
        "bad-time",
        "duplicate-key",
        "oversize-value",
        "oversize-key",
        "many-headers",
        "deep-nesting",
        "invalid-utf8",
        "lone-surrogate",
        "numbers",
        "binary-mode",
        "binary-null-ce",
        "cpr-outside-data",
        "unknown-keys",
        "unknown-attribute",
        "extensions",
        "wrong-type",
        "not-an-object",
        "wrong-source",
        "type-not-allowed",
        "unknown-tenant",
        "duplicate",
    ):
        assert needed in categories
    # Deterministic: the same seed and time give the same records.
    now = datetime(2026, 7, 1, 12, tzinfo=UTC)
    assert hostile_records(SEED, 520, now) == hostile_records(SEED, 520, now)


def test_every_record_gets_a_verdict_its_contract_allows(
    corpus: list[HostileRecord], routed: list[tuple[Incoming, Routed]]
) -> None:
    wrong = []
    for record, (_, result) in zip(corpus, routed, strict=True):
        allowed = set(record.expect - {KAFKA_REFUSED}) or {DEAD}
        if _OUTCOMES[result.verdict] not in allowed:
            wrong.append(f"expected {sorted(allowed)}, got {describe(record, result)}")
    assert not wrong, "\n".join(wrong)


def test_no_corpus_record_trips_an_internal_error(
    corpus: list[HostileRecord], routed: list[tuple[Incoming, Routed]]
) -> None:
    """Stage `internal` means a rule was missing: every record here has a rule that refuses it."""
    internal = [
        describe(r, res) for r, (_, res) in zip(corpus, routed, strict=True) if res.stage == "internal"
    ]
    assert not internal, "\n".join(internal)


def test_deliberate_duplicates_are_routed_once(
    corpus: list[HostileRecord], routed: list[tuple[Incoming, Routed]]
) -> None:
    verdicts: dict[str | None, list[str]] = {}
    for record, (_, result) in zip(corpus, routed, strict=True):
        if record.category == "duplicate":
            verdicts.setdefault(record.message_id, []).append(result.verdict)
    assert verdicts
    assert all(v == ["routed", "duplicate"] for v in verdicts.values()), verdicts


def test_outputs_are_well_formed_and_carry_no_cpr_outside_data(
    routed: list[tuple[Incoming, Routed]],
) -> None:
    for rec, result in routed:
        assert result.outputs or result.verdict == "duplicate"
        dead = [o for o in result.outputs if o.topic == TOPICS.dlq]
        assert len(dead) == (1 if result.verdict == "rejected" else 0)
        for out in result.outputs:
            assert all(isinstance(k, str) and isinstance(v, bytes) for k, v in out.headers)
            # aiokafka refuses to send a record with neither (an AssertionError, not a Kafka error).
            assert out.key is not None or out.value is not None, (
                f"an output to {out.topic} with no key or value"
            )
            assert not cpr_leaks(out.key or b""), f"CPR in the key of an output to {out.topic}"
            if out.topic == TOPICS.dlq:
                headers = dict(out.headers)
                assert headers[h.ERROR_STAGE]
                assert headers[h.ERROR_REASON]
                assert not cpr_leaks(headers[h.ERROR_REASON]), headers[h.ERROR_REASON]
                assert headers[h.ORIGINAL_TOPIC] == rec.topic.encode()
                assert headers[h.ORIGINAL_PARTITION] == str(rec.partition).encode()
                assert headers[h.ORIGINAL_OFFSET] == str(rec.offset).encode()
            elif out.topic.startswith(f"{TOPICS.prefix}.replies."):
                message = parse(out.value)
                if isinstance(message, Receipt):
                    assert not cpr_leaks(message.data.reason or ""), message.data.reason
                    assert not cpr_leaks(message.data.message_id)
            elif out.topic.startswith(f"{TOPICS.prefix}.deliver."):
                assert out.value is not None
                # What the LPS gets is the canonical form of what was validated, in structured mode.
                assert to_bytes(parse(out.value)) == out.value
                assert dict(out.headers)[h.CONTENT_TYPE] == b"application/cloudevents+json"
                assert out.key in (CLINIC.encode(), OTHER_CLINIC.encode())


async def test_null_header_values_and_keys_are_absent_not_fatal() -> None:
    from producers import build  # noqa: PLC0415 - a valid message to spoil

    message = build.video_queue_notice("minlaege-video", CLINIC, event="joined", queue_entry_id="q")
    raw = SimpleNamespace(
        topic=TOPICS.ingress("minlaege-video"),
        partition=0,
        offset=7,
        key=None,
        value=to_bytes(message),
        headers=(("content-type", None), ("ce_specversion", None), ("x", b"1")),
    )
    rec = Incoming.from_record(raw)
    result = await make_router().route(rec, Batch())
    assert result.verdict == "routed"
    [out] = result.outputs
    assert parse(out.value) == message


async def test_the_router_forwards_canonical_bytes_not_the_senders() -> None:
    from producers import build  # noqa: PLC0415 - a valid message to re-encode

    message = build.video_queue_notice(
        "minlaege-video", CLINIC, event="joined", queue_entry_id="q", cpr="0101901234"
    )
    sent = codec.dumps(codec.loads(to_bytes(message)), indent=True)  # sorted keys, indented: same message
    assert sent != to_bytes(message)
    rec = Incoming(TOPICS.ingress("minlaege-video"), 0, 0, CLINIC.encode(), sent)
    result = await make_router().route(rec, Batch())
    assert result.verdict == "routed"
    assert [o.value for o in result.outputs] == [to_bytes(message)]


async def test_a_duplicated_recipient_is_refused_not_routed_on_either_value() -> None:
    value = (
        b'{"specversion":"1.0","id":"dup-1","source":"urn:prik:minlaege-video",'
        b'"type":"dk.prik.advisory.video-queue.v1","time":"' + _now() + b'",'
        b'"recipient":"' + OTHER_CLINIC.encode() + b'","recipient":"' + CLINIC.encode() + b'",'
        b'"data":{"queue_entry_id":"q","event":"joined","waiting_since":"' + _now() + b'"}}'
    )
    result = await make_router().route(Incoming(TOPICS.ingress("minlaege-video"), 0, 0, None, value), Batch())
    assert result.verdict == "rejected"
    assert [o.topic for o in result.outputs] == [TOPICS.dlq, TOPICS.replies("minlaege-video")]


async def test_a_year_9999_video_notice_is_refused_not_a_crash() -> None:
    value = (
        b'{"specversion":"1.0","id":"late-1","source":"urn:prik:minlaege-video",'
        b'"type":"dk.prik.advisory.video-queue.v1","time":"9999-12-31T23:59:00Z","recipient":"'
        + CLINIC.encode()
        + b'","data":{"queue_entry_id":"q","event":"joined","waiting_since":"2026-01-01T00:00:00Z"}}'
    )
    result = await make_router().route(Incoming(TOPICS.ingress("minlaege-video"), 0, 0, None, value), Batch())
    assert result.verdict == "rejected"
    assert result.stage == "validate"


async def test_a_failure_inside_a_rule_is_an_internal_dead_letter_without_its_message() -> None:
    from producers import build  # noqa: PLC0415 - a valid message

    router = make_router()

    def broken(_key: str) -> None:
        msg = "lookup failed for patient 0101901234"
        raise RuntimeError(msg)

    router.directory.get = broken  # type: ignore[method-assign, assignment]
    message = build.video_queue_notice("minlaege-video", CLINIC, event="joined", queue_entry_id="q")
    rec = Incoming(TOPICS.ingress("minlaege-video"), 3, 9, CLINIC.encode(), to_bytes(message))
    result = await router.route(rec, Batch())
    assert result.verdict == "rejected"
    assert result.stage == "internal"
    dead = next(o for o in result.outputs if o.topic == TOPICS.dlq)
    headers = dict(dead.headers)
    assert headers[h.ERROR_STAGE] == b"internal"
    assert b"RuntimeError" in headers[h.ERROR_REASON]
    assert not cpr_leaks(headers[h.ERROR_REASON])
    assert dead.value == rec.value
    receipts = [parse(o.value) for o in result.outputs if o.topic == TOPICS.replies("minlaege-video")]
    assert [r.data.outcome for r in receipts if isinstance(r, Receipt)] == ["rejected"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arbitrary_records())
def test_arbitrary_records_never_raise_and_get_exactly_one_verdict(record: HostileRecord) -> None:
    rec = incoming(record, offset=11, partition=2)
    result = asyncio.run(make_router().route(rec, Batch()))
    assert isinstance(result, Routed)
    assert result.verdict in {"routed", "forwarded", "rejected", "expired", "duplicate"}
    if result.verdict == "rejected":
        [dead] = [o for o in result.outputs if o.topic == TOPICS.dlq]
        headers = dict(dead.headers)
        assert headers[h.ERROR_STAGE]
        assert not cpr_leaks(headers[h.ERROR_REASON])
        assert headers[h.ORIGINAL_OFFSET] == b"11"
        # A record with neither key nor value becomes a letter with an empty value: aiokafka sends that.
        assert dead.value == (b"" if rec.key is None and rec.value is None else rec.value)
    elif result.verdict in {"routed", "forwarded"}:
        assert any(o.topic != TOPICS.dlq for o in result.outputs)
        assert all(o.topic != TOPICS.dlq for o in result.outputs)
    for out in result.outputs:
        assert all(isinstance(v, bytes) for _, v in out.headers)
        assert out.key is not None or out.value is not None, "aiokafka cannot send a record with neither"


def _now() -> bytes:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ").encode()
