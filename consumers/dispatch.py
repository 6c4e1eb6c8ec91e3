"""The fetch loop of a `ClinicConsumer`: records into clinics' lanes, re-reads, backpressure, commits.

Commits and rebalances are serialised: on revoke, the lanes of the revoked
partitions are stopped, what is final is committed, and the rest is left for the
next owner. Every commit has a time budget: aiokafka's own retries wait for ever
while Kafka is unreachable, and a commit that cannot happen loses nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from contracts import Message, ParseError, parse
from contracts.headers import normalise_headers
from prik.logs import get_logger, trace_fields
from prik.quarantine import RawRecord

from .lanes import Admit, Lane, PartitionWork, clinic_of
from .pipeline import Pipeline, Record
from .stats import ConsumerStats

__all__ = ["Dispatcher"]

_log = get_logger("prik.consumers")
# The lane of records whose clinic could not be read: they only ever become dead letters.
_UNREADABLE_LANE = "unreadable"


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no types
    def __init__(self, owner: Dispatcher) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._owner.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._owner.on_assigned(assigned)


class Dispatcher:
    """Hands fetched records to per-clinic lanes and commits what is final.

    Memory is bounded twice: a clinic's lane holds at most `lane_limit` records (a
    failing clinic's further records stay in Kafka and are read again later, see
    `lanes`), and a partition with `high_water` unfinished records pauses its fetch.
    """

    def __init__(
        self,
        *,
        pipeline: Pipeline,
        stats: ConsumerStats,
        stopping: asyncio.Event,
        high_water: int,
        lane_limit: int,
        commit_interval: float,
        commit_timeout: float,
        read_raw: Callable[[str, int, int], Awaitable[RawRecord | None]] | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._stats = stats
        self._stopping = stopping
        self._high_water = high_water
        self._low_water = max(1, high_water // 2)
        self._lane_limit = lane_limit
        self._commit_interval = commit_interval
        self._commit_timeout = commit_timeout
        self._commit_lock = asyncio.Lock()
        # Reads one record aiokafka cannot decode through librdkafka (prik/quarantine.py).
        self._read_raw = read_raw
        self.consumer: AIOKafkaConsumer | None = None
        self.parts: dict[TopicPartition, PartitionWork] = {}
        self.heartbeat = time.monotonic()

    def listener(self) -> ConsumerRebalanceListener:
        return _Listener(self)

    def tasks(self) -> list[asyncio.Task[None]]:
        return [task for part in self.parts.values() for task in part.tasks()]

    # --- the fetch loop ---------------------------------------------------------------------

    async def run(self, consumer: AIOKafkaConsumer) -> None:
        next_commit = time.monotonic() + self._commit_interval
        failures = 0
        while not self._stopping.is_set():
            try:
                batches = await consumer.getmany(timeout_ms=200, max_records=500)
            except AIOKafkaError as exc:
                failures += 1
                _log.warning("fetch failed, will retry", error=type(exc).__name__, failures=failures)
                await asyncio.sleep(min(5.0, 0.2 * 2**failures))
                continue
            except Exception as exc:  # noqa: BLE001  aiokafka cannot decode a record: see prik/quarantine.py
                _log.warning("a record could not be decoded, reading it apart", error=type(exc).__name__)
                if not await self._quarantine(consumer):
                    await asyncio.sleep(1.0)
                continue
            failures = 0
            self.heartbeat = time.monotonic()
            for tp, records in batches.items():
                part = self.parts.get(tp)
                if part is None:
                    continue  # revoked while these were in flight: the next owner reads them
                for record in records:
                    self._accept(part, record)
                self._apply_backpressure(part)
            for part in list(self.parts.values()):
                self._reposition(consumer, part)
            if time.monotonic() >= next_commit:
                await self.commit(list(self.parts.values()))
                next_commit = time.monotonic() + self._commit_interval

    async def _quarantine(self, consumer: AIOKafkaConsumer) -> bool:
        """Take the next record of the partition aiokafka cannot decode through librdkafka.

        True when one was taken (it becomes a dead letter or is delivered like any other).
        """
        parts = [part for part in self.parts.values() if not part.paused]
        # The failed fetch still moved the position of every other partition it drained:
        # go back to what was taken, or nothing of theirs would be read again.
        for part in parts:
            if part.seen is not None:
                consumer.seek(part.tp, part.seen)
            elif (committed := await consumer.committed(part.tp)) is not None:
                consumer.seek(part.tp, committed)
            else:
                await consumer.seek_to_beginning(part.tp)
        tps = [part.tp for part in parts]
        ends = await consumer.end_offsets(tps) if tps else {}
        for part in parts:
            position = await consumer.position(part.tp)
            if position >= ends.get(part.tp, 0):
                continue
            try:
                # All of what is there: the poison may lie behind records that decode fine.
                await consumer.getmany(part.tp, timeout_ms=5_000, max_records=500)
            except AIOKafkaError:
                raise
            except Exception:  # noqa: BLE001  this is the partition: its fetch cannot be decoded
                raw = (
                    None
                    if self._read_raw is None
                    else await self._read_raw(part.tp.topic, part.tp.partition, position)
                )
                consumer.seek(part.tp, position)
                if raw is None:
                    return False
                self._accept(part, raw)
                consumer.seek(part.tp, raw.offset + 1)
                return True
            consumer.seek(part.tp, position)
        return False

    def _accept(self, part: PartitionWork, record: ConsumerRecord[bytes, bytes] | RawRecord) -> None:
        message: Message | None = None
        error: ParseError | None = None
        internal: str | None = None
        unreadable = getattr(record, "unreadable", None)
        value: bytes = record.value if record.value is not None else b""
        try:
            # Null header values are legal in Kafka and mean "absent".
            headers = list(normalise_headers(record.headers))
            if unreadable is not None:
                error = ParseError(unreadable, stage="parse")
            elif record.key is None:  # the lane follows the key; only a keyless record needs parsing first
                message, error = _parse(value, headers)
            clinic = clinic_of(record.key, message.recipient if message is not None else None)
        except Exception as exc:  # noqa: BLE001  no record may stop the consumer: it becomes a dead letter
            headers, clinic = [], _UNREADABLE_LANE
            internal = f"the consumer failed on this record ({type(exc).__name__})"
        verdict = part.admit(record.offset, clinic, self._lane_limit)
        if verdict is Admit.SKIP:
            return
        if verdict is Admit.DEFER:
            self._stats.deferred += 1
            return
        if record.key is not None and internal is None and unreadable is None:
            message, error = _parse(value, headers)
        item = Record(part.tp, record.offset, record.key, value, headers, clinic, message, error, internal)
        part.tracker.add(record.offset)
        self._stats.consumed += 1
        self._stats.in_flight[clinic] += 1
        lane = part.lanes.get(clinic)
        if lane is None:
            lane = part.lanes[clinic] = Lane(clinic)
        lane.queue.append(item)
        if lane.task is None:
            lane.task = asyncio.create_task(self._work(part, lane), name=f"prik-lane-{clinic}")

    async def _work(self, part: PartitionWork, lane: Lane) -> None:
        try:
            while lane.queue and not self._stopping.is_set():
                record = lane.queue[0]
                try:
                    final = await self._pipeline.finish(record, lane.phase)
                except Exception as exc:  # noqa: BLE001  a bug must not become an outage
                    # No traceback: its locals could hold the record, and with it patient data.
                    message = record.message
                    _log.error(
                        "delivery pipeline failed, dead-lettering the record",
                        clinic=lane.clinic,
                        offset=record.offset,
                        error=type(exc).__name__,
                        **({} if message is None else {"message_id": message.id}),
                        **trace_fields(None if message is None else message.traceparent),
                    )
                    final = await self._pipeline.finish_internally(record, lane.phase, exc)
                    if not final:
                        # Not even the dead letter could be written: back off, then try the record again.
                        lane.phase.enter("error", 1.0)
                        await asyncio.sleep(1.0)
                        continue
                if not final:
                    return
                lane.queue.popleft()
                part.tracker.done(record.offset)
                if part.behind:  # only a clinic that is behind has records to release
                    part.release(lane.clinic, len(lane.queue), self._lane_limit)
                self._forget(lane.clinic)
                if part.paused:  # a finished record can only lift a pause (the fetch loop sets them)
                    self._apply_backpressure(part)
        finally:
            lane.task = None
            if not lane.queue and part.lanes.get(lane.clinic) is lane:
                del part.lanes[lane.clinic]

    def _forget(self, clinic: str, count: int = 1) -> None:
        left = self._stats.in_flight[clinic] - count
        if left > 0:
            self._stats.in_flight[clinic] = left
        else:
            del self._stats.in_flight[clinic]

    def _reposition(self, consumer: AIOKafkaConsumer, part: PartitionWork) -> None:
        """Seek back to read a drained clinic's deferred records again (or past a re-read stretch)."""
        target = part.reposition()
        if target is None:
            return
        try:
            consumer.seek(part.tp, target)
        except (AIOKafkaError, AssertionError) as exc:  # aiokafka asserts the partition is assigned
            # Revoked meanwhile: the next owner starts from the committed offset, which is below.
            _log.warning("seek failed", partition=part.tp.partition, error=type(exc).__name__)
            return
        self._stats.refetches += 1

    def _apply_backpressure(self, part: PartitionWork) -> None:
        """Pause a partition's fetch while too much of it is unfinished, so memory stays bounded."""
        consumer = self.consumer
        if consumer is None or self.parts.get(part.tp) is not part:
            return
        pending = part.tracker.pending
        if not part.paused and pending >= self._high_water:
            consumer.pause(part.tp)
            part.paused = True
            self._stats.paused_partitions += 1
        elif part.paused and pending <= self._low_water:
            consumer.resume(part.tp)
            part.paused = False
            self._stats.paused_partitions -= 1

    # --- commits and rebalances -----------------------------------------------------------

    async def commit(self, parts: list[PartitionWork]) -> None:
        """Commit each partition up to its lowest record not final; within `commit_timeout`."""
        consumer = self.consumer
        if consumer is None:
            return
        # One lock for the fetch loop's commits and the revoke handler's, so a late commit
        # can never move a partition's committed offset backwards.
        async with self._commit_lock:
            offsets = {part.tp: off for part in parts if (off := part.to_commit()) is not None}
            if not offsets:
                return
            try:
                async with asyncio.timeout(self._commit_timeout):
                    await consumer.commit(offsets)
            except TimeoutError:
                # Kafka unreachable: aiokafka would look for the coordinator for ever.
                _log.warning("offset commit timed out", timeout=self._commit_timeout)
                return
            except AIOKafkaError as exc:
                # CommitFailed (rebalanced), IllegalState (not assigned) or a broker error:
                # nothing is lost, the records are read again by whoever owns them next.
                _log.warning("offset commit failed", error=type(exc).__name__)
                return
            for part in parts:
                if part.tp in offsets:
                    part.committed = offsets[part.tp]

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        parts = [part for tp in revoked if (part := self.parts.pop(tp, None)) is not None]
        tasks = [task for part in parts for task in part.tasks()]
        for task in tasks:
            task.cancel()
        if tasks:
            # Cancelled lanes end at their next await; one that does not is not waited for.
            await asyncio.wait(tasks, timeout=self._commit_timeout)
        for part in parts:
            for lane in part.lanes.values():
                self._forget(lane.clinic, len(lane.queue))
            if part.paused:
                self._stats.paused_partitions -= 1
        await self.commit(parts)
        if parts:
            _log.info("partitions revoked", partitions=sorted(p.tp.partition for p in parts))

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        for tp in assigned:
            self.parts.setdefault(tp, PartitionWork(tp))
        if assigned:
            _log.info("partitions assigned", partitions=sorted(tp.partition for tp in assigned))


def _parse(value: bytes, headers: list[tuple[str, bytes]]) -> tuple[Message | None, ParseError | None]:
    try:
        return parse(value, headers), None
    except ParseError as exc:
        return None, exc
