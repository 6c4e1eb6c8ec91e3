"""Read one window of the ingress and replies topics from Kafka into a `UsageTally`.

Kafka is the record, so the accounting is right after any restart, while the
router is down, and for any window. Nothing is read from before the window:
each partition starts at `offsets_for_times(since)` and stops at the end
offset taken when the read began (read_committed: the last stable offset), so
a busy topic cannot keep it reading for ever. Group-less: no offsets are
committed and no group's position moves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from contracts import MAX_MESSAGE_BYTES, KafkaError, Tenants, Topics
from prik.kafka import admin_client, kafka_errors, make_consumer
from prik.settings import KafkaSettings

from .usage import Usage, UsageTally

__all__ = ["RECEIPT_LEAD", "Progress", "traffic", "usage"]

# Receipts are read from this long before the window: the router's clock (receipt
# timestamps) may be behind a sender's (message timestamps).
RECEIPT_LEAD = timedelta(minutes=5)
# With an `until`, ingress partitions are read this far past it: record timestamps
# are the senders' clocks, so a partition's timestamps are not quite in order.
_LATE = timedelta(minutes=5)
_POLL_MS = 500
_MAX_RECORDS = 10_000

Progress = Callable[[int, int], None]
"""Called with (records read so far, records to read in all) as the read goes on."""

Kind = Literal["ingress", "replies"]


@dataclass(slots=True)
class _Range:
    """The offsets to read of one partition: `start` (inclusive) to `end` (exclusive)."""

    kind: Kind
    tenant: str
    tp: TopicPartition
    start: int
    end: int
    done: int = 0

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)


def _ms(moment: datetime) -> int:
    return max(0, int(moment.timestamp() * 1000))


async def _partitions(
    kafka: KafkaSettings, wanted: dict[str, tuple[Kind, str]]
) -> tuple[list[tuple[Kind, str, TopicPartition]], list[str]]:
    """The partitions of the wanted topics that exist, and the names of those that do not."""
    async with admin_client(kafka) as admin:
        with kafka_errors("listing topics"):
            # Only names the cluster lists are described: asking for a missing topic
            # by name may auto-create it on some brokers.
            existing = set(await admin.list_topics())
            present = sorted(name for name in wanted if name in existing)
            described = await admin.describe_topics(present) if present else []
    found: list[tuple[Kind, str, TopicPartition]] = []
    for topic in described:
        if topic["error_code"]:
            msg = f"describing {topic['topic']}: Kafka error code {topic['error_code']}"
            raise KafkaError(msg, retriable=True)
        kind, tenant = wanted[topic["topic"]]
        found += [
            (kind, tenant, TopicPartition(topic["topic"], p["partition"]))
            for p in sorted(topic["partitions"], key=lambda p: int(p["partition"]))
        ]
    return found, sorted(name for name in wanted if name not in existing)


async def _ranges(
    consumer: AIOKafkaConsumer,
    found: list[tuple[Kind, str, TopicPartition]],
    since: datetime,
    until: datetime | None,
) -> list[_Range]:
    """Where each partition's window starts and ends."""
    tps = [tp for _, _, tp in found]
    if not tps:
        return []
    starts_at = {tp: _ms(since - RECEIPT_LEAD) if kind == "replies" else _ms(since) for kind, _, tp in found}
    ends = await consumer.end_offsets(tps)
    starts = await consumer.offsets_for_times(starts_at)
    stops = {}
    if until is not None:
        # Receipts of the window's messages come after it: replies are read to their end.
        stops = await consumer.offsets_for_times(
            {tp: _ms(until + _LATE) for kind, _, tp in found if kind == "ingress"}
        )
    ranges = []
    for kind, tenant, tp in found:
        end = ends[tp]
        stop = stops.get(tp)
        if stop is not None:
            end = min(end, stop.offset)
        start = starts.get(tp)
        # No record at or after the start time: nothing of this partition is in the window.
        ranges.append(_Range(kind, tenant, tp, min(start.offset, end) if start is not None else end, end))
    return ranges


def _feed(
    tally: UsageTally, fetched: _Range, records: list[ConsumerRecord[bytes, bytes]], *, load_only: bool
) -> None:
    for record in records:
        if record.offset >= fetched.end:
            return
        if load_only:
            tally.load(fetched.tenant, record.timestamp, len(record.value or b""))
        elif fetched.kind == "ingress":
            tally.ingress(fetched.tenant, record.timestamp, record.value, record.headers)
        else:
            tally.reply(fetched.tenant, record.value, record.headers)


async def _read(
    consumer: AIOKafkaConsumer,
    ranges: list[_Range],
    tally: UsageTally,
    progress: Progress | None,
    *,
    load_only: bool = False,
) -> None:
    total = sum(r.size for r in ranges)
    if progress is not None:
        progress(0, total)
    remaining = {r.tp: r for r in ranges if r.size > 0}
    # An assigned partition is fetched in the background from wherever it stands:
    # one with nothing to read must not be fetched from its beginning.
    consumer.pause(*(r.tp for r in ranges if r.tp not in remaining))
    for r in remaining.values():
        consumer.seek(r.tp, r.start)
    while remaining:
        batch = await consumer.getmany(*remaining, timeout_ms=_POLL_MS, max_records=_MAX_RECORDS)
        for tp, records in batch.items():
            fetched = remaining.get(tp)
            if fetched is not None:
                _feed(tally, fetched, records, load_only=load_only)
        for tp, r in list(remaining.items()):
            # Positions move past transaction markers too, so "position >= end" is
            # reached even when the last offset is a commit marker, not a record.
            position = await consumer.position(tp)
            r.done = min(position, r.end) - r.start
            if position >= r.end:
                consumer.pause(tp)
                del remaining[tp]
        if progress is not None:
            progress(sum(r.done for r in ranges), total)
        # getmany returns at once while records are buffered: let the rest of a shared
        # loop (the dashboard's page) run between batches.
        await asyncio.sleep(0)


async def _stop(consumer: AIOKafkaConsumer) -> None:
    # Bounded: a broker that stopped answering must not hold the command up.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(consumer.stop(), 10)


async def _window(
    kafka: KafkaSettings,
    topics: Topics,
    tally: UsageTally,
    tenants: Tenants,
    *,
    replies: bool,
    progress: Progress | None,
) -> datetime:
    """Feed the window's records to `tally`; returns when the end offsets were taken."""
    wanted: dict[str, tuple[Kind, str]] = {}
    for tenant in tenants.ids:
        wanted[topics.ingress(tenant)] = ("ingress", tenant)
        if replies:
            wanted[topics.replies(tenant)] = ("replies", tenant)
    found, missing = await _partitions(kafka, wanted)
    tally.missing_topics = tuple(missing)
    consumer = make_consumer(kafka, group_id=None, client_id="prik-usage")
    doing = f"reading usage from Kafka at {kafka.bootstrap}"
    try:
        with kafka_errors(doing):
            await consumer.start()
    except BaseException:
        await _stop(consumer)
        raise
    try:
        with kafka_errors(doing):
            consumer.assign([tp for _, _, tp in found])
            # The window ends here when no `until` was given: what is written later is not read.
            captured = datetime.now(UTC)
            ranges = await _ranges(consumer, found, tally.since, tally.until)
            await _read(consumer, ranges, tally, progress, load_only=not replies)
    finally:
        await _stop(consumer)
    return captured


def _check(since: datetime, until: datetime | None) -> None:
    if since.tzinfo is None or (until is not None and until.tzinfo is None):
        msg = "usage needs aware date-times"
        raise ValueError(msg)


async def usage(
    kafka: KafkaSettings,
    topics: Topics,
    tenants: Tenants,
    since: datetime,
    until: datetime | None = None,
    *,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    progress: Progress | None = None,
) -> Usage:
    """Per-party accounting of `since` to `until` (default: now), read from Kafka itself.

    Every tenant of `tenants` is a sender and every LPS a receiver, also with
    no traffic; a tenant whose topics do not exist counts as empty and is named
    in `Usage.missing_topics`. `max_message_bytes` must be the router's
    (`Settings.max_message_bytes`): a record it refuses as too large is
    `rejected` here too. Every record is validated (about 50 µs each), so a
    day of heavy traffic takes minutes; for the load alone use `traffic`.
    Raises `KafkaError` (or `NotAuthorisedError`) in one line.
    """
    _check(since, until)
    tally = UsageTally(tenants, since, until, max_message_bytes=max_message_bytes)
    captured = await _window(kafka, topics, tally, tenants, replies=True, progress=progress)
    return tally.result(until=until or captured)


async def traffic(
    kafka: KafkaSettings,
    topics: Topics,
    tenants: Tenants,
    since: datetime,
    until: datetime | None = None,
    *,
    progress: Progress | None = None,
) -> Usage:
    """The load alone: per sender `messages` and `bytes`, and the `peak`, exactly as `usage` counts them.

    Neither validates a record nor reads the replies topics, so it costs little
    more than the read itself; every outcome and receiver count is 0.
    """
    _check(since, until)
    tally = UsageTally(tenants, since, until)
    captured = await _window(kafka, topics, tally, tenants, replies=False, progress=progress)
    return tally.result(until=until or captured)
