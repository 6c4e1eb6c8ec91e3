"""The hostile campaign on a real broker: hundreds of records no sender should write, and prik goes on.

A `prik broker run` process routes the ingress records; an in-process
`ClinicConsumer` takes records put straight onto its delivery topic. Afterwards
every record must be accounted for (routed, dead-lettered, receipted or a
deliberate duplicate), both services must still run and serve a valid message,
and no CPR may show up in a log line, a dead-letter reason or a receipt.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.admin import NewTopic

from consumers import Backoff, CallbackDeliverer, ClinicConsumer
from consumers.errors import DeliveryRefused, RetriableDeliveryError
from contracts import Message, ParseError, Receipt, codec, parse, to_bytes
from contracts import headers as h
from prik.kafka import admin_client
from producers import Publisher, build
from producers.reading import read_records
from tests.hostile.corpus import (
    CLINIC,
    CPRS,
    DEAD,
    DELIVERED,
    DUPLICATE,
    EXPIRED,
    GHOST,
    KAFKA_REFUSED,
    LPS,
    OTHER_LPS,
    ROUTED,
    SKIPPED,
    HostileRecord,
    cpr_leaks,
    delivery_records,
    hostile_records,
)
from tests.hostile.corpus import FLAKY_PREFIX as FLAKY
from tests.hostile.corpus import REFUSE_PREFIX as REFUSE

from .conftest import RouterProcess, World

pytestmark = pytest.mark.kafka

SEED = 20260701
INGRESS_RECORDS = 520
DELIVERY_RECORDS = 110
UNACCOUNTED = "UNACCOUNTED"
ROUTER_SOURCE = "urn:prik:router"


@dataclass
class Sent:
    record: HostileRecord
    topic: str
    partition: int | None = None
    offset: int | None = None
    refused: str | None = None  # the broker's (or client's) refusal

    @property
    def where(self) -> tuple[str, int, int] | None:
        if self.partition is None or self.offset is None:
            return None
        return (self.topic, self.partition, self.offset)


@dataclass
class Seen:
    """What the campaign's records became, read back from every output topic."""

    dead: dict[tuple[str, int, int], dict[str, bytes]] = field(default_factory=dict)
    dead_twice: list[tuple[str, int, int]] = field(default_factory=list)
    routed: Counter[str] = field(default_factory=Counter)
    router_receipts: dict[str, list[Receipt]] = field(default_factory=lambda: defaultdict(list))
    lps_receipts: dict[str, list[Receipt]] = field(default_factory=lambda: defaultdict(list))
    problems: list[str] = field(default_factory=list)


async def _records(world: World, topic: str) -> list[Any]:
    return [record async for record in read_records(world.kafka, topic)]


async def _seen(world: World, direct: set[tuple[str, int, int]]) -> Seen:
    """Read every output topic; `direct` are the campaign's own records on a delivery topic."""
    seen = Seen()
    topics = world.topics
    for record in await _records(world, topics.dlq):
        headers = {k: bytes(v) for k, v in record.headers or () if v is not None}
        try:
            origin = (
                headers[h.ORIGINAL_TOPIC].decode(),
                int(headers[h.ORIGINAL_PARTITION]),
                int(headers[h.ORIGINAL_OFFSET]),
            )
        except (KeyError, ValueError):
            seen.problems.append(f"dead letter at {record.partition}/{record.offset} without its origin")
            continue
        if origin in seen.dead:
            seen.dead_twice.append(origin)
        seen.dead[origin] = headers
    await _read_deliveries(world, seen, direct)
    await _read_receipts(world, seen)
    return seen


async def _read_deliveries(world: World, seen: Seen, direct: set[tuple[str, int, int]]) -> None:
    for lps in (LPS, OTHER_LPS):
        for record in await _records(world, world.topics.deliver(lps)):
            if (record.topic, record.partition, record.offset) in direct:
                continue
            try:
                message = parse(record.value, record.headers)
            except ParseError:
                seen.problems.append(
                    f"the router wrote an unreadable record at {record.partition}/{record.offset}"
                )
                continue
            if record.value != to_bytes(message):
                seen.problems.append(f"{message.id}: routed bytes are not the canonical encoding")
            if cpr_leaks(record.key or b""):
                seen.problems.append(f"{message.id}: a CPR in a delivery key")
            seen.routed[message.id] += 1


async def _read_receipts(world: World, seen: Seen) -> None:
    topics = world.topics
    for tenant in world.tenants.ids:
        for record in await _records(world, topics.replies(tenant)):
            message = parse(record.value, record.headers)
            if isinstance(message, Receipt) and message.source == ROUTER_SOURCE:
                seen.router_receipts[message.data.message_id].append(message)
                if cpr_leaks(record.key or b"") or cpr_leaks(message.data.reason or ""):
                    seen.problems.append(f"a CPR in receipt {message.id}: {message.data.reason}")
            else:
                seen.routed[message.id] += 1  # forwarded (task statuses, LPS receipts)
    for record in await _records(world, topics.ingress(LPS)):
        with contextlib.suppress(ParseError):
            message = parse(record.value, record.headers)
            if isinstance(message, Receipt) and message.source == f"urn:prik:{LPS}":
                seen.lps_receipts[message.data.message_id].append(message)
                if cpr_leaks(message.data.reason or ""):
                    seen.problems.append(f"a CPR in the LPS receipt {message.id}: {message.data.reason}")


async def _dead_letters(world: World) -> dict[tuple[str, int, int], dict[str, bytes]]:
    """The dead letters by origin; a dead-letter topic aiokafka cannot read is a failure of its own."""
    try:
        return (await _seen_dead(world)).dead
    except UnicodeDecodeError:
        pytest.fail("the dead-letter topic holds a record aiokafka cannot decode")


async def _seen_dead(world: World) -> Seen:
    seen = Seen()
    for record in await _records(world, world.topics.dlq):
        headers = {k: bytes(v) for k, v in record.headers or () if v is not None}
        with contextlib.suppress(KeyError, ValueError):
            origin = (
                headers[h.ORIGINAL_TOPIC].decode(),
                int(headers[h.ORIGINAL_PARTITION]),
                int(headers[h.ORIGINAL_OFFSET]),
            )
            seen.dead[origin] = headers
    return seen


def _classify_ingress(sent: list[Sent], seen: Seen) -> list[str]:
    left = Counter(seen.routed)
    outcomes = []
    for s in sent:
        mid = s.record.message_id
        if s.refused is not None:
            outcomes.append(KAFKA_REFUSED)
        elif s.where in seen.dead:
            outcomes.append(DEAD)
        elif mid is not None and left[mid] > 0:
            left[mid] -= 1
            outcomes.append(ROUTED)
        elif mid is not None and any(r.data.outcome == "expired" for r in seen.router_receipts.get(mid, [])):
            outcomes.append(EXPIRED)
        elif mid is not None and seen.routed[mid] > 0 and s.record.category == "duplicate":
            outcomes.append(DUPLICATE)
        else:
            outcomes.append(UNACCOUNTED)
    return outcomes


def _classify_delivery(sent: list[Sent], seen: Seen, skipped: int) -> list[str]:
    outcomes = []
    for s in sent:
        mid = s.record.message_id
        receipts = seen.lps_receipts.get(mid or "", [])
        if s.refused is not None:
            outcomes.append(KAFKA_REFUSED)
        elif s.where in seen.dead:
            outcomes.append(DEAD)
        elif any(r.data.outcome == "delivered" for r in receipts):
            outcomes.append(DELIVERED)
        elif any(r.data.outcome == "expired" for r in receipts):
            outcomes.append(EXPIRED)
        elif s.record.category == "receipt" and skipped > 0:
            skipped -= 1
            outcomes.append(SKIPPED)
        else:
            outcomes.append(UNACCOUNTED)
    return outcomes


def _receipted(s: Sent, seen: Seen) -> bool:
    """Whether the router wrote its sender a receipt about it (by id, or by its place for no id)."""
    keys = [s.record.message_id or ""]
    if s.where is not None:
        keys.append(":".join(str(part) for part in s.where))
    return any(seen.router_receipts.get(k) for k in keys)


async def _produce(world: World, batch: list[tuple[str, HostileRecord]]) -> list[Sent]:
    """Send as a raw client would: null header values and keys as they are, no validation."""
    # Not idempotent: one batch the broker refuses must not wedge the sequence of the rest.
    producer = AIOKafkaProducer(
        bootstrap_servers=world.kafka.bootstrap, acks="all", linger_ms=5, max_request_size=1_048_576
    )
    await producer.start()
    sent = [Sent(record, topic) for topic, record in batch]
    try:
        futures: list[tuple[Sent, asyncio.Future[Any]]] = []
        for s in sent:
            try:
                future = await producer.send(
                    s.topic, s.record.value, key=s.record.key, headers=s.record.headers
                )
            except Exception as exc:  # noqa: BLE001 - the client's refusal is an outcome
                s.refused = type(exc).__name__
                continue
            futures.append((s, future))
        for s, future in futures:
            try:
                metadata = await future
            except Exception as exc:  # noqa: BLE001 - the broker's refusal is an outcome
                s.refused = type(exc).__name__
                continue
            s.partition, s.offset = metadata.partition, metadata.offset
    finally:
        await producer.stop()
    return sent


def _keyless_valueless(record: HostileRecord) -> bool:
    return record.key is None and record.value is None


def _produce_with_librdkafka(world: World, sent: list[Sent]) -> None:
    """What aiokafka refuses to write but librdkafka writes: no key and no value, raw header names."""
    from confluent_kafka import Producer  # noqa: PLC0415 - only these few records need it

    producer = Producer({**world.kafka.confluent_config(), "acks": "all"})

    def done(s: Sent) -> Any:
        def report(error: Any, message: Any) -> None:
            if error is not None:
                s.refused = str(error.name())
            else:
                s.partition, s.offset = message.partition(), message.offset()

        return report

    for s in sent:
        headers: list[tuple[str, str | bytes | None]] = list(s.record.headers)
        producer.produce(
            s.topic, value=s.record.value, key=s.record.key, headers=headers, on_delivery=done(s)
        )
    assert producer.flush(30) == 0


@contextlib.contextmanager
def logs_into(buffer: io.StringIO) -> Iterator[None]:
    """prik's structlog output as production writes it (JSON lines, tracebacks included), into `buffer`."""
    previous = structlog.get_config()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=codec.dumps_log),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=buffer),
        cache_logger_on_first_use=False,
    )
    try:
        yield
    finally:
        structlog.configure(**previous)


class Lps:
    """The in-process LPS: refuses `refuse-` ids for good, fails `flaky-` ids once."""

    def __init__(self) -> None:
        self.received: list[Message] = []
        self._failed: set[str] = set()
        self._arrived = asyncio.Event()

    async def __call__(self, message: Message) -> None:
        if message.id.startswith(REFUSE):
            msg = f"no such patient {CPRS[0]}"
            raise DeliveryRefused(msg)
        if message.id.startswith(FLAKY) and message.id not in self._failed:
            self._failed.add(message.id)
            msg = f"busy with patient {CPRS[1]}"
            raise RetriableDeliveryError(msg)
        self.received.append(message)
        self._arrived.set()

    def ids(self) -> set[str]:
        return {m.id for m in self.received}

    async def wait_for(self, message_id: str, within: float) -> bool:
        """Whether `message_id` arrives within `within` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while message_id not in self.ids():
                    self._arrived.clear()
                    await self._arrived.wait()
        return message_id in self.ids()


def _consumer(world: World, lps: Lps) -> ClinicConsumer:
    return ClinicConsumer(
        world.kafka,
        world.topics,
        LPS,
        CallbackDeliverer(lps),
        backoff=Backoff(base=0.2, cap=1.0),
        max_retry_time=20,
        attempt_timeout=5,
        stop_grace=2.0,
    )


def _alive(consumer: ClinicConsumer) -> bool:
    task = consumer._loop_task
    return task is not None and not task.done()


def _table(title: str, rows: dict[str, Counter[str]], columns: list[str]) -> str:
    width = max(len(c) for c in rows) + 2
    lines = [title, "category".ljust(width) + "".join(f"{c:>15}" for c in ["sent", *columns])]
    totals: Counter[str] = Counter()
    for category, counts in rows.items():
        totals.update(counts)
        lines.append(category.ljust(width) + "".join(f"{counts[c]:>15}" for c in ["sent", *columns]))
    lines.append("TOTAL".ljust(width) + "".join(f"{totals[c]:>15}" for c in ["sent", *columns]))
    return "\n".join(lines) + "\n"


async def _wait_accounted(
    world: World, ingress: list[Sent], direct: list[Sent], consumer: ClinicConsumer, within: float
) -> tuple[Seen, list[str], list[str]]:
    deadline = time.monotonic() + within
    positions = {s.where for s in direct if s.where is not None}
    while True:
        seen = await _seen(world, positions)
        routed = _classify_ingress(ingress, seen)
        delivered = _classify_delivery(direct, seen, consumer.stats.skipped)
        if (UNACCOUNTED not in routed and UNACCOUNTED not in delivered) or time.monotonic() > deadline:
            return seen, routed, delivered
        await asyncio.sleep(1.0)


async def test_no_hostile_record_stops_prik_and_every_one_is_accounted_for(
    world: World, routers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with admin_client(world.kafka) as admin:
        await admin.create_topics(
            [NewTopic(world.topics.ingress(GHOST), num_partitions=6, replication_factor=1)]
        )
    router: RouterProcess = routers("hostile")
    now = datetime.now(UTC)
    # Records with neither key nor value have a test of their own (below): aiokafka cannot write them.
    corpus = [r for r in hostile_records(SEED, INGRESS_RECORDS, now) if not _keyless_valueless(r)]
    direct_corpus = [
        r for r in delivery_records(SEED + 1, DELIVERY_RECORDS, now) if not _keyless_valueless(r)
    ]
    assert len(corpus) >= 500
    assert len(direct_corpus) >= 100
    lps = Lps()
    consumer_log = io.StringIO()
    with logs_into(consumer_log):
        consumer = _consumer(world, lps)
        async with consumer:
            ingress = await _produce(world, [(world.topics.ingress(r.tenant), r) for r in corpus])
            direct = await _produce(world, [(world.topics.deliver(LPS), r) for r in direct_corpus])
            seen, routed, delivered = await _wait_accounted(world, ingress, direct, consumer, within=60)

            # Both still run, and a valid message sent now goes all the way to the LPS.
            failures = _still_running(router, consumer, consumer_log)
            after = build.video_queue_notice(
                "minlaege-video", CLINIC, event="called", queue_entry_id="after", cpr=CPRS[0]
            )
            async with Publisher(world.kafka, "minlaege-video", world.topics) as publisher:
                await publisher.publish(after)
            if not await lps.wait_for(after.id, 30):
                failures.append("a valid message sent after the campaign was not delivered")
            failures += _still_running(router, consumer, consumer_log)
            skipped = consumer.stats.skipped
    failures += _stopped_cleanly(router)

    # The figures, per category (run with -s to see them).
    _report(ingress, routed, direct, delivered, seen)
    failures += _misaccounted(ingress, routed, direct, delivered, seen, skipped=skipped)
    # No CPR in any log line: the router process, the consumer, the libraries.
    for name, text in (
        ("router log", router.log.read_bytes().decode("utf-8", "replace")),
        ("consumer log", consumer_log.getvalue()),
        ("library log", caplog.text),
    ):
        if cpr_leaks(text):
            failures.append(f"a CPR in the {name}:\n{_lines_with_cpr(text)}")
    assert not failures, "\n".join(failures)


def _stopped_cleanly(router: RouterProcess) -> list[str]:
    """Still running at the very end, and then a clean stop on SIGTERM."""
    if router.process is None or router.process.poll() is not None:
        return [f"the router died before the end:\n{router.output()[-1500:].decode('utf-8', 'replace')}"]
    code = router.terminate()
    return [] if code == 0 else [f"the router exited {code} on SIGTERM"]


def _still_running(router: RouterProcess, consumer: ClinicConsumer, consumer_log: io.StringIO) -> list[str]:
    failures = []
    if router.process is None or router.process.poll() is not None:
        failures.append(f"the router stopped:\n{router.output()[-3000:].decode('utf-8', 'replace')}")
    if not _alive(consumer):
        failures.append(f"the consumer stopped:\n{consumer_log.getvalue()[-3000:]}")
    return failures


def _misaccounted(
    ingress: list[Sent],
    routed: list[str],
    direct: list[Sent],
    delivered: list[str],
    seen: Seen,
    *,
    skipped: int,
) -> list[str]:
    """Every record accounted for, as its contract allows; dead letters say where and why, without a CPR."""
    failures = []
    for label, sent, outcomes in (("ingress", ingress, routed), ("delivery", direct, delivered)):
        lost = [
            f"{s.record.category} ({s.record.note}) at {s.where}"
            for s, o in zip(sent, outcomes, strict=True)
            if o == UNACCOUNTED
        ]
        if lost:
            failures.append(f"{len(lost)} {label} records silently dropped:\n" + "\n".join(lost))
        failures += [
            f"{label} {s.record.category} ({s.record.note}): {o}, expected {sorted(s.record.expect)}"
            for s, o in zip(sent, outcomes, strict=True)
            if o not in s.record.expect and o != UNACCOUNTED
        ]
    if sum(o == SKIPPED for o in delivered) != skipped:
        failures.append(f"the consumer skipped {skipped} records, not the campaign's receipts")
    if seen.dead_twice:
        failures.append(f"dead-lettered twice: {seen.dead_twice}")
    failures += seen.problems
    internal = set()
    for s in ingress + direct:
        headers = seen.dead.get(s.where) if s.where is not None else None
        if headers is None:
            continue
        if not headers.get(h.ERROR_STAGE) or not headers.get(h.ERROR_REASON):
            failures.append(f"{s.record.category} ({s.record.note}): a dead letter without stage or reason")
        if cpr_leaks(headers.get(h.ERROR_REASON, b"")):
            failures.append(
                f"{s.record.category}: a CPR in the dead-letter reason {headers[h.ERROR_REASON]!r}"
            )
        if headers.get(h.ERROR_STAGE) == b"internal":
            internal.add(s.record.category)
    if internal:
        failures.append(f"records that reached stage internal (a rule is missing): {sorted(internal)}")
    return failures


def _report(
    ingress: list[Sent], routed: list[str], direct: list[Sent], delivered: list[str], seen: Seen
) -> None:
    ingress_rows: dict[str, Counter[str]] = defaultdict(Counter)
    for s, outcome in zip(ingress, routed, strict=True):
        row = ingress_rows[s.record.category]
        row["sent"] += 1
        row[outcome] += 1
        row["receipted"] += _receipted(s, seen)
    delivery_rows: dict[str, Counter[str]] = defaultdict(Counter)
    for s, outcome in zip(direct, delivered, strict=True):
        delivery_rows[s.record.category]["sent"] += 1
        delivery_rows[s.record.category][outcome] += 1
    stages = Counter(
        (s.record.category, seen.dead[s.where].get(h.ERROR_STAGE, b"?").decode())
        for s, outcome in zip(ingress, routed, strict=True)
        if outcome == DEAD and s.where is not None
    )
    sys.stdout.write(
        "\n"
        + _table(
            f"ingress campaign ({len(ingress)} records)",
            ingress_rows,
            [ROUTED, DEAD, "receipted", EXPIRED, DUPLICATE, KAFKA_REFUSED, UNACCOUNTED],
        )
        + "\n"
        + _table(
            f"delivery-topic campaign ({len(direct)} records)",
            delivery_rows,
            [DELIVERED, DEAD, EXPIRED, SKIPPED, KAFKA_REFUSED, UNACCOUNTED],
        )
        + "\nrouter dead-letter stages: "
        + ", ".join(f"{c}/{stage}={n}" for (c, stage), n in sorted(stages.items()))
        + "\n"
    )


def _lines_with_cpr(text: str) -> str:
    return "\n".join(line[:300] for line in text.splitlines() if cpr_leaks(line))[:3000]


async def _kcat(world: World, topic: str, value: bytes) -> Sent:
    """A record with a header name that is not UTF-8, as librdkafka writes it; partition 0."""
    from aiokafka import TopicPartition  # noqa: PLC0415 - this helper only

    from prik.kafka import make_consumer  # noqa: PLC0415 - this helper only

    tp = TopicPartition(topic, 0)
    consumer = make_consumer(world.kafka, group_id=None)
    await consumer.start()
    try:
        offset = (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()
    produced = subprocess.run(
        [
            b"kcat",
            b"-P",
            b"-b",
            world.kafka.bootstrap.encode(),
            b"-t",
            topic.encode(),
            b"-p",
            b"0",
            b"-k",
            CLINIC.encode(),
            b"-H",
            b"\xff\xfe=1",
        ],
        input=value,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert produced.returncode == 0, produced.stderr
    record = HostileRecord("header-name-not-utf8", CLINIC.encode(), value, [("\udcff\udcfe", b"1")])
    return Sent(record, topic, 0, offset)


@pytest.mark.parametrize("poison", ["no-key-no-value", "header-name-not-utf8"])
async def test_records_only_librdkafka_writes_stop_neither_router_nor_consumer(
    world: World, routers: Any, poison: str
) -> None:
    """Kafka allows a record with no key and no value, and a header name that is not UTF-8.

    aiokafka refuses to write the first and cannot decode the second, but librdkafka
    (kcat, confluent-kafka, most other clients) writes both: prik must read past them.
    """
    router: RouterProcess = routers("librdkafka")
    lps = Lps()
    ingress, deliver = world.topics.ingress("minlaege-video"), world.topics.deliver(LPS)
    notice = to_bytes(build.video_queue_notice("minlaege-video", CLINIC, event="joined", queue_entry_id="p"))
    no_headers: list[tuple[str, bytes | None]] = []
    null_header: list[tuple[str, bytes | None]] = [("x", None)]
    async with _consumer(world, lps) as consumer:
        empty = [
            Sent(HostileRecord("no-key-no-value", None, None, headers), topic)
            for topic in (ingress, deliver)
            for headers in (no_headers, null_header)
        ]
        if poison == "no-key-no-value":
            await asyncio.to_thread(_produce_with_librdkafka, world, empty)
            sent = empty
        else:
            # `make test` installs kcat: a missing one is a failure, never a skip.
            assert shutil.which("kcat") is not None, "kcat is not installed: run `make setup` (Debian's kcat)"
            sent = [await _kcat(world, ingress, notice), await _kcat(world, deliver, notice)]
        after = build.video_queue_notice("minlaege-video", CLINIC, event="left", queue_entry_id="after")
        async with Publisher(world.kafka, "minlaege-video", world.topics) as publisher:
            await publisher.publish(after)
        failures = []
        if not await lps.wait_for(after.id, 30):
            failures.append("a valid message sent after the poison was not delivered")
        failures += _still_running(router, consumer, io.StringIO())
        # Not silently skipped either: each is a dead letter, found by where it was.
        deadline = time.monotonic() + 15
        dead = await _dead_letters(world)
        while any(s.where not in dead for s in sent) and time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            dead = await _dead_letters(world)
        failures += [f"{s.record.category} on {s.topic}: no dead letter" for s in sent if s.where not in dead]
        failures += [
            f"{s.record.category}: a CPR in the dead-letter reason"
            for s in sent
            if s.where is not None and s.where in dead and cpr_leaks(dead[s.where].get(h.ERROR_REASON, b""))
        ]
    failures += _stopped_cleanly(router)
    assert not failures, "\n".join(failures)
