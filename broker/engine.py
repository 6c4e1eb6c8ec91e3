"""Consume → route → produce → commit, as Kafka transactions per input partition number.

FastStream has no consume-produce transactions with offsets, so the
production path drives aiokafka directly: a batch's outputs and its input
offsets commit atomically (`send_offsets_to_transaction`), so a crash anywhere
leaves either the batch routed and committed, or none of it.

Fencing (KIP-98): every transaction for input partition number p is written
under the transactional id `<prefix>-router-p<p>` (broker/assignor.py gives
each number to one instance). An instance that gets p initialises that id
first, which aborts or waits out the previous owner's open transaction and
fences it for good, and only then reads where p was committed. A paused or
cut-off instance that still believes it owns p can therefore never commit
next to the new owner: aiokafka has no KIP-447 group-metadata fencing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.structs import ConsumerRecord

from contracts import ErrorStage, KafkaError
from prik.kafka import FATAL_PRODUCER_ERRORS, kafka_errors, make_consumer
from prik.logs import debug_enabled, get_logger, trace_fields
from prik.metrics import partition_lags
from prik.quarantine import read_one
from prik.settings import KafkaSettings

from .assignor import PartitionNumberAssignor
from .metrics import RouterMetrics
from .outputs import dead_letter
from .rebuild import rebuild_dedup
from .records import Incoming, Outgoing
from .router import NOTHING_STAGED, Batch, Routed, Router, Staged
from .transactional import TransactionalProducers

__all__ = ["EngineStats", "TransactionalEngine"]

_log = get_logger(__name__)
# Consecutive aborts before the engine suspects one record and goes one by one.
_ISOLATE_AFTER = 3
# Records decided between two turns of the event loop while a batch commits (~1-2 ms).
_YIELD_EVERY = 32
# How long one top-up fetch waits while the batch in flight commits.
_TOP_UP_MS = 5


# Per partition number: the batch that decided, what it decided, and the outputs to write.
_Plan = tuple[Batch, list[tuple[Incoming, Routed]], list[Outgoing]]
_Shares = dict[int, dict[TopicPartition, list[Any]]]


@dataclass(frozen=True, slots=True)
class _InFlight:
    """A batch whose transactions are committing while the next one is decided."""

    batches: dict[TopicPartition, list[Any]]
    staged: Staged
    task: asyncio.Task[None]


@dataclass(slots=True)
class EngineStats:
    batches: int = 0
    records: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    aborted: int = 0


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    def __init__(self, engine: TransactionalEngine) -> None:
        self._engine = engine

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Wait for the batch in flight: its offsets commit inside its own
        # transaction, so nothing unfinished is ever handed to the next owner.
        async with self._engine.lock:
            await self._engine.wait_in_flight()
            self._engine.generation += 1
        _log.info("router.partitions_revoked", count=len(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        # Taking ownership talks to Kafka and may fail: the run loop does it (and
        # retries it) before it routes anything, see TransactionalEngine._settle.
        async with self._engine.lock:
            self._engine.generation += 1
            self._engine.unsettled = set(assigned)
        _log.info("router.partitions_assigned", count=len(assigned))


class TransactionalEngine:
    def __init__(
        self,
        kafka: KafkaSettings,
        router: Router,
        *,
        group_id: str,
        transactional_prefix: str,
        instance_id: str = "prik-router",
        max_batch: int = 500,
        on_batch: Callable[[EngineStats], Awaitable[None] | None] | None = None,
        metrics: RouterMetrics | None = None,
    ) -> None:
        self._kafka = kafka
        self.router = router
        self._group_id = group_id
        self._client_id = instance_id
        self._max_batch = max_batch
        self.on_batch = on_batch
        self.metrics = metrics
        self.lock = asyncio.Lock()
        self.stats = EngineStats()
        self._consumer: AIOKafkaConsumer | None = None
        # One transactional producer per input partition number this instance owns.
        self._producers = TransactionalProducers(kafka, transactional_prefix, instance_id)
        # Assigned partitions whose ownership is not yet taken (see _settle).
        self.unsettled: set[TopicPartition] | None = None
        # Where this instance last committed each partition: if Kafka says otherwise
        # when the partition comes back, another instance routed it meanwhile.
        self._committed_here: dict[TopicPartition, int] = {}
        self._stopping = asyncio.Event()
        # Bumped by every rebalance: a batch fetched under another generation is dropped.
        self.generation = 0
        self._cluster: Any = None
        self._in_flight: _InFlight | None = None
        # The batches of an in-flight commit that failed, until the run loop reads them again.
        self._failed: dict[TopicPartition, list[Any]] = {}
        # Batches aborted in a row: after a few the engine goes record by record.
        self._aborts = 0
        # A fetch while topping up a batch failed to decode: the next turn quarantines.
        self._undecodable = False
        # Partitions of the batches aborted since: the row ends only once each has committed,
        # not when another partition's batch commits in between (its own fetch, its own leader).
        self._suspects: set[TopicPartition] = set()

    async def start(self) -> None:
        self._consumer = make_consumer(
            self._kafka,
            group_id=self._group_id,
            auto_offset_reset="earliest",
            client_id=self._client_id,
            # Partition number p of every ingress topic to one instance, written
            # under one transactional id: fencing and co-partitioning both.
            partition_assignment_strategy=(PartitionNumberAssignor,),
            # A new tenant's ingress topic is found within seconds, no restart.
            metadata_max_age_ms=5_000,
            # A tap on the shoulder is worth little late: fetch as soon as data is there.
            fetch_max_wait_ms=50,
            max_poll_interval_ms=300_000,
        )
        with kafka_errors("starting the router's consumer"):
            await self._consumer.start()
        self._consumer.subscribe(pattern=self.router.topics.ingress_pattern, listener=_Listener(self))
        # Pattern subscription keeps metadata of every topic fresh (metadata_max_age_ms).
        self._cluster = self._consumer._client.cluster  # noqa: SLF001 - aiokafka has no public metadata view
        dlq = self.router.topics.dlq
        if dlq not in self._cluster.topics():
            with kafka_errors("reading the cluster's topics"):
                await self._consumer._client.force_metadata_update()  # noqa: SLF001 - no public refresh
        if dlq not in self._cluster.topics():
            # Without it a refused record has nowhere to go: routing would stall at the first one.
            msg = f"topic {dlq} does not exist (run `prik topics apply`)"
            raise KafkaError(msg)

    async def _seek_to_committed(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, int | None]:
        """Each partition back to where Kafka says it was committed (its start if never); those offsets."""
        assert self._consumer is not None  # noqa: S101 - start() precedes run()
        consumer = self._consumer
        committed: dict[TopicPartition, int | None] = {}
        for tp in sorted(partitions, key=lambda t: (t.topic, t.partition)):
            committed[tp] = offset = self._newest(tp, await consumer.committed(tp))
            if offset is not None:
                consumer.seek(tp, offset)
            else:
                await consumer.seek_to_beginning(tp)
        return committed

    def _newest(self, tp: TopicPartition, committed: int | None) -> int | None:
        """What Kafka says is committed, unless this instance itself committed further.

        Right after a commit Kafka may still answer with the offset before it (a
        transaction's markers are written after EndTxn returns); offsets only move
        forward, so the newer of the two is where the partition stands.
        """
        here = self._committed_here.get(tp)
        if here is not None and (committed is None or here > committed):
            return here
        return committed

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Route until `request_stop`; the batches in flight finish first.

        Pipelined: while one batch's transactions commit, the next batch is
        fetched and decided (seeing what the batch in flight staged), and its
        transactions begin as soon as the previous ones have committed. A message
        therefore waits for the rest of one commit, not for a whole previous
        batch plus its own; per partition number one transaction is open at a
        time, as its one producer requires.
        """
        assert self._consumer is not None  # noqa: S101 - start() precedes run()
        settle_failures = 0
        cancelled = False
        try:
            while not self._stopping.is_set():
                if self.unsettled is not None:
                    settle_failures = await self._try_settle(settle_failures)
                    continue
                await self._turn()
        except asyncio.CancelledError:
            # A forced stop (the grace is over): a commit that never ends must not hold
            # it here; stop() gives what is in flight a bound, then cancels it.
            cancelled = True
            raise
        finally:
            if not cancelled:
                # Stopping: what is in flight commits (or aborts and is read again by the next owner).
                await self.drain_in_flight()

    async def _turn(self) -> None:
        """One fetch and what follows from it."""
        generation = self.generation
        if self._undecodable:
            # A top-up fetch of the pipeline failed to decode: the quarantine takes it from here.
            batches: dict[TopicPartition, list[ConsumerRecord]] = {}
            undecodable, self._undecodable = True, False
        else:
            batches, undecodable = await self._fetch()
        try:
            if not batches and not undecodable:
                # Nothing new: a batch in flight still has to be seen through.
                await self._finish_in_flight()
                return
            async with self.lock:
                if generation != self.generation or self.unsettled is not None:
                    # Fetched across a rebalance: ownership first, then read again what is committed.
                    await self._rewind(batches)
                    _log.info("router.batch_refetched", records=sum(len(r) for r in batches.values()))
                    return
                isolate = self._aborts >= _ISOLATE_AFTER
                if undecodable or isolate:
                    # The careful paths work on what Kafka says is committed: nothing may be in flight.
                    await self._finish_in_flight()
                    if undecodable:
                        await self._quarantine()
                if isolate:
                    await self._process_one_by_one(batches)
                else:
                    await self._pipeline(batches)
        except Exception as exc:  # noqa: BLE001  Kafka failures and what a record did to a send alike
            # Any failure aborts the batch's transaction: nothing of it is committed. After
            # repeated ones the engine goes record by record, so one record cannot stall all.
            self._aborts += 1
            self.stats.aborted += 1
            if self.metrics is not None:
                self.metrics.aborted_batch()
            _log.warning("router.batch_aborted", error=type(exc).__name__, attempt=self._aborts)
            await self.drain_in_flight()
            # What failed in flight is read again too, with what this turn fetched. Where both
            # hold a partition, the batch in flight has its earlier records: they must win, as
            # a partition never committed is read again from the first record given.
            failed, self._failed = self._failed, {}
            self._suspects |= await self._rewind({**batches, **failed})
            await self._pause(self._aborts)

    async def _fetch(
        self, timeout_ms: int = 200, max_records: int | None = None
    ) -> tuple[dict[TopicPartition, list[ConsumerRecord]], bool]:
        """The next records, and whether a fetch failed to decode (see prik/quarantine.py)."""
        assert self._consumer is not None  # noqa: S101 - start() precedes run()
        try:
            batches = await self._consumer.getmany(
                timeout_ms=timeout_ms, max_records=max_records or self._max_batch
            )
        except AIOKafkaError:
            raise
        except Exception as exc:  # noqa: BLE001  aiokafka cannot decode a record of the fetch
            _log.warning("router.undecodable_record", error=type(exc).__name__)
            return {}, True
        finally:
            if self.metrics is not None:
                self.metrics.polled()
        return batches, False

    async def _try_settle(self, failures: int) -> int:
        """Take ownership; the failures in a row after it (0 when it worked)."""
        try:
            async with self.lock:
                # Ownership closes and replaces producers: no transaction of the old assignment may be open.
                await self.drain_in_flight()
                await self._settle()
        except Exception as exc:  # noqa: BLE001  Kafka refused or failed: try again, bounded
            _log.warning("router.ownership_failed", error=type(exc).__name__, attempt=failures + 1)
            await self._pause(failures + 1)
            return failures + 1
        return 0

    async def _pause(self, failures: int) -> None:
        delay = min(30.0, 0.2 * 2**failures) * random.uniform(0.5, 1.0)  # noqa: S311 - jitter
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)

    async def _settle(self) -> None:
        """Take ownership of what the last rebalance assigned, before routing any of it.

        In this order: a fresh producer per owned partition number (initialising
        its transactional id fences the previous owner and settles its open
        transaction), then each partition back to where Kafka says it was
        committed (only now is that final), then the dedup windows and task
        states, read after whatever the previous owner committed.
        """
        assert self._consumer is not None  # noqa: S101 - start() precedes run()
        consumer, assigned = self._consumer, self.unsettled or set()
        numbers = {tp.partition for tp in assigned}
        await self._producers.own(numbers)
        with kafka_errors("reading the committed offsets"):
            committed = await self._seek_to_committed(assigned)
        # A window is still this instance's only if nobody committed the partition since.
        dedup = self.router.dedup
        dedup.keep_only(
            {
                (tp.topic, tp.partition)
                for tp in assigned
                if committed[tp] is not None and self._committed_here.get(tp) == committed[tp]
            }
        )
        self._committed_here = {tp: o for tp, o in committed.items() if o is not None}
        self._failed = {}
        self._suspects &= assigned
        lost = {tp: o for tp, o in committed.items() if not dedup.has(tp.topic, tp.partition)}
        await rebuild_dedup(self._kafka, consumer, lost, dedup)
        await self.router.catch_up_tasks()
        self.unsettled = None
        _log.info("router.ownership_taken", partitions=len(assigned), transactional_ids=len(numbers))

    async def _quarantine(self) -> None:
        """Route, through librdkafka, the next record of the partition aiokafka cannot decode.

        Each call moves that partition on by one record, so a poisoned producer
        batch is worked through record by record, and every record in it (the
        poison a dead letter, its neighbours routed as usual) is committed once.
        """
        assert self._consumer is not None  # noqa: S101 - start() precedes run()
        consumer = self._consumer
        assigned = sorted(consumer.assignment(), key=lambda t: (t.topic, t.partition))
        # The failed fetch still moved the position of every other partition it drained:
        # back to what is committed, or those records would be skipped.
        await self._seek_to_committed(assigned)
        ends = await consumer.end_offsets(assigned) if assigned else {}
        for tp in assigned:
            position = await consumer.position(tp)
            if position >= ends.get(tp, 0):
                continue  # nothing to read there, so nothing to fail on
            try:
                # All of what is there: the poison may lie behind records that decode fine.
                await consumer.getmany(tp, timeout_ms=5_000, max_records=self._max_batch)
            except AIOKafkaError:
                raise
            except Exception:  # noqa: BLE001  this is the partition: its fetch cannot be decoded
                record = await read_one(self._kafka, tp.topic, tp.partition, position)
                consumer.seek(tp, position)
                if record is not None:
                    _log.warning(
                        "router.quarantined_record",
                        topic=tp.topic,
                        partition=tp.partition,
                        offset=record.offset,
                    )
                    await self._process({tp: [record]})
                    consumer.seek(tp, record.offset + 1)
                return
            # Only probed: read it again in order with the rest.
            consumer.seek(tp, position)

    async def _process(self, batches: dict[TopicPartition, list[Any]]) -> None:
        """Route the batch and commit it before returning (the careful paths: one by one, quarantine)."""
        await self._finish_in_flight()
        shares: _Shares = {}
        plans: dict[int, _Plan] = {}
        topic_exists = self._cluster.topics().__contains__
        await self._decide_into(batches, shares, plans, NOTHING_STAGED, topic_exists)
        await self._commit(shares, [plans[p] for p in shares])

    async def _pipeline(self, batches: dict[TopicPartition, list[Any]]) -> None:
        """Decide `batches` while the batch in flight commits, then start committing them.

        Until that commit ends, whatever else arrives joins this batch, decided as it
        comes: under light load a batch is everything that arrived during the previous
        commit, as without the pipeline, rather than the first record or two, which
        would make all the others wait for one more commit.
        """
        previous = self._in_flight
        staged = previous.staged if previous is not None else NOTHING_STAGED
        topic_exists = self._cluster.topics().__contains__
        taken: dict[TopicPartition, list[Any]] = {}
        shares: _Shares = {}
        plans: dict[int, _Plan] = {}
        more: dict[TopicPartition, list[Any]] = batches
        try:
            while True:
                for tp, records in more.items():
                    taken.setdefault(tp, []).extend(records)
                await self._decide_into(more, shares, plans, staged, topic_exists)
                room = self._max_batch - sum(len(r) for r in taken.values())
                if previous is None or previous.task.done() or room <= 0 or self._undecodable:
                    break
                more, self._undecodable = await self._fetch(timeout_ms=_TOP_UP_MS, max_records=room)
            await self._finish_in_flight()
        except Exception:
            # Nothing taken here was written: the run loop reads it all again, the top-ups
            # too (where the failed batch in flight holds a partition, its earlier records win).
            for tp, records in taken.items():
                self._failed.setdefault(tp, records)
            raise
        self._in_flight = _InFlight(
            taken,
            Staged.of(plan[0] for plan in plans.values()),
            asyncio.create_task(self._commit(shares, [plans[p] for p in shares]), name="router-commit"),
        )

    def _plan_shares(self, batches: dict[TopicPartition, list[Any]]) -> _Shares:
        """`batches` split by partition number, without what a rebalance took away meanwhile."""
        assert self._consumer is not None  # noqa: S101 - start() precedes run()
        owned = self._consumer.assignment()
        if any(tp not in owned for tp in batches):
            _log.info("router.records_left_to_new_owner", partitions=sum(tp not in owned for tp in batches))
        shares: _Shares = {}
        for tp, records in batches.items():
            if tp in owned and records:
                shares.setdefault(tp.partition, {})[tp] = records
        return shares

    async def _decide_into(
        self,
        more: dict[TopicPartition, list[Any]],
        shares: _Shares,
        plans: dict[int, _Plan],
        staged: Staged,
        topic_exists: Callable[[str], bool],
    ) -> None:
        """Decide `more`, adding it to each partition number's share and plan (one `Batch` per number)."""
        for p, share in self._plan_shares(more).items():
            plan = plans.get(p)
            batch = plan[0] if plan is not None else Batch(topic_exists=topic_exists, ahead=staged)
            _, decided, outputs = await self._decide(share, batch)
            if plan is None:
                plans[p] = (batch, decided, outputs)
            else:
                plan[1].extend(decided)
                plan[2].extend(outputs)
            for tp, records in share.items():
                shares.setdefault(p, {}).setdefault(tp, []).extend(records)

    async def _commit(self, shares: _Shares, plans: list[_Plan]) -> None:
        """Commit each partition number's share as its own transaction, concurrently.

        If one fails, the others stay committed, and the caller rewinds every
        partition to what Kafka says is committed.
        """
        results = await asyncio.gather(
            *(
                self._transact(p, share, outputs)
                for (p, share), (_, _, outputs) in zip(shares.items(), plans, strict=True)
            ),
            return_exceptions=True,
        )
        decided_all: list[tuple[Incoming, Routed]] = []
        failure: BaseException | None = None
        for share, (batch, decided, _), result in zip(shares.values(), plans, results, strict=True):
            if isinstance(result, BaseException):
                failure = failure or result
                continue
            self.router.commit(batch)
            decided_all.extend(decided)
            self._passed(share)
        if decided_all:
            await self._committed(decided_all)
        if failure is not None:
            raise failure
        self._passed(())

    def _passed(self, partitions: Iterable[TopicPartition]) -> None:
        """A commit moved `partitions` on: aborts are no longer in a row once no suspect is left."""
        self._suspects.difference_update(partitions)
        if not self._suspects:
            self._aborts = 0

    async def _finish_in_flight(self) -> None:
        """Wait for the batch in flight to commit; its failure is raised here."""
        in_flight = self._in_flight
        if in_flight is None:
            return
        try:
            # Awaited here and perhaps by the rebalance listener at once: both wait for the end.
            await asyncio.shield(in_flight.task)
        except Exception:
            self._failed.update(in_flight.batches)
            raise
        finally:
            if self._in_flight is in_flight and in_flight.task.done():
                self._in_flight = None

    async def wait_in_flight(self) -> None:
        """Wait until the batch in flight has committed or failed; the run loop still sees a failure."""
        in_flight = self._in_flight
        if in_flight is not None:
            await asyncio.wait({in_flight.task})

    async def drain_in_flight(self) -> None:
        """Wait for the batch in flight; a failure is only logged: what reads next starts at the committed."""
        try:
            await self._finish_in_flight()
        except Exception as exc:  # noqa: BLE001  the caller seeks to what is committed next anyway
            self.stats.aborted += 1
            _log.warning("router.batch_aborted", error=type(exc).__name__, attempt=1)

    async def _decide(self, share: dict[TopicPartition, list[Any]], batch: Batch) -> _Plan:
        decided: list[tuple[Incoming, Routed]] = []
        outputs: list[Outgoing] = []
        since_yield = 0
        for records in share.values():
            for record in records:
                rec = Incoming.from_record(record)
                routed = await self.router.route(rec, batch)
                decided.append((rec, routed))
                outputs.extend(routed.outputs)
                since_yield += 1
                if since_yield >= _YIELD_EVERY and self._in_flight is not None:
                    # Deciding is pure CPU and rarely awaits for real: without a turn of the
                    # event loop now and then, the batch in flight could not even write its
                    # requests, and nothing would overlap.
                    since_yield = 0
                    await asyncio.sleep(0)
        return batch, decided, outputs

    async def _transact(
        self, partition: int, share: dict[TopicPartition, list[Any]], outputs: list[Outgoing]
    ) -> None:
        producer = await self._producers.healthy(partition)
        try:
            async with producer.transaction():
                sends = [
                    await producer.send(out.topic, out.value, key=out.key, headers=list(out.headers))
                    for out in outputs
                ]
                await asyncio.gather(*sends)
                offsets = {tp: records[-1].offset + 1 for tp, records in share.items()}
                await producer.send_offsets_to_transaction(offsets, self._group_id)
        except AIOKafkaError as exc:
            # A failed send leaves the idempotent producer's sequence numbers
            # behind the broker's (the next send is OutOfOrderSequenceNumber,
            # aiokafka #1017): only a new producer, with a new epoch, goes on.
            await self._producers.failed(partition, exc)
            raise
        self._committed_here.update(offsets)

    async def _process_one_by_one(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """After repeated aborts: one transaction per record, so one bad record cannot stall the rest.

        A record whose outputs Kafka refuses for good (too large, not authorised)
        becomes a dead letter on its own; a retriable failure still aborts and retries.
        """
        for tp, records in batches.items():
            for record in records:
                try:
                    await self._process({tp: [record]})
                except Exception as exc:
                    if getattr(exc, "retriable", False) or isinstance(exc, FATAL_PRODUCER_ERRORS):
                        raise
                    await self._dead_letter_alone(tp, record, exc)

    async def _dead_letter_alone(self, tp: TopicPartition, record: ConsumerRecord, exc: Exception) -> None:
        rec = Incoming.from_record(record)
        too_large = isinstance(exc, MessageSizeTooLargeError)
        reason = f"could not write the routing outputs ({type(exc).__name__})"
        stage = ErrorStage.ROUTE if isinstance(exc, AIOKafkaError | KafkaError) else ErrorStage.INTERNAL
        letter = dead_letter(self.router.topics, rec, stage, reason)
        if too_large:
            # The original does not fit next to the error headers: keep where it was instead.
            letter = Outgoing(letter.topic, letter.key, b"", letter.headers)
        producer = await self._producers.healthy(tp.partition)
        try:
            async with producer.transaction():
                sent = await producer.send(
                    letter.topic, letter.value, key=letter.key, headers=list(letter.headers)
                )
                await sent
                await producer.send_offsets_to_transaction({tp: record.offset + 1}, self._group_id)
        except AIOKafkaError as failure:
            await self._producers.failed(tp.partition, failure)
            raise
        self._committed_here[tp] = record.offset + 1
        self._passed((tp,))
        _log.warning(
            "router.isolated_dead_letter", topic=tp.topic, partition=tp.partition, offset=record.offset
        )
        await self._committed([(rec, Routed("rejected", "", [letter], stage=str(stage)))])

    async def _committed(self, decided: list[tuple[Incoming, Routed]]) -> None:
        debug = debug_enabled()
        verdicts = self.stats.verdicts
        for rec, routed in decided:
            verdicts[routed.verdict] = verdicts.get(routed.verdict, 0) + 1
            if debug and routed.message_id is not None:
                # Debug only, one line per record: ids and the verdict, never the record's content.
                _log.debug(
                    "router.decided",
                    message_id=routed.message_id,
                    topic=rec.topic,
                    verdict=routed.verdict,
                    stage=routed.stage,
                    **trace_fields(routed.traceparent),
                )
        if self.metrics is not None:
            self.metrics.decided_all(decided)
            self.metrics.committed()
        self.stats.batches += 1
        self.stats.records += len(decided)
        if self.on_batch is not None:
            result = self.on_batch(self.stats)
            if result is not None:
                await result

    async def lags(self) -> list[tuple[str, int, int]]:
        """(topic, partition, records behind) of each partition assigned now, from the client's state."""
        consumer = self._consumer
        if consumer is None:
            return []
        return await partition_lags(consumer, consumer.assignment())

    async def _rewind(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> set[TopicPartition]:
        """After an abort, read again from the last committed offset of each partition.

        The partitions that have records of `batches` to read again (the rest were committed).
        """
        consumer = self._consumer
        assert consumer is not None  # noqa: S101 - start() precedes run()
        again: set[TopicPartition] = set()
        for tp, records in batches.items():
            if records and tp in consumer.assignment():
                try:
                    committed = await consumer.committed(tp)
                except AIOKafkaError:
                    committed = None
                committed = self._newest(tp, committed)
                # Asked again: a rebalance may have taken the partition while Kafka answered
                # (an abort is rewound outside the lock), and seeking it then raises.
                if tp in consumer.assignment():
                    # Records one-by-one mode already committed are not read again.
                    offset = committed if committed is not None else records[0].offset
                    consumer.seek(tp, offset)
                    if offset <= records[-1].offset:
                        again.add(tp)
        return again

    async def _end_in_flight(self, within: float) -> None:
        """A forced stop cancelled the run loop: the last commit gets the same bound as the close."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            done, _ = await asyncio.wait({in_flight.task}, timeout=within)
            if not done:
                # Never committed: Kafka aborts it (or the next owner's producer fences it).
                in_flight.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await in_flight.task

    async def stop(self, close_within: float = 10.0) -> None:
        """Leave the group and close; safe to call twice. Bounded: a dead broker cannot hang it."""
        self._stopping.set()
        consumer, self._consumer = self._consumer, None
        # Before the lock: a revoke callback may hold it while it waits for this very commit.
        await self._end_in_flight(close_within)
        async with self.lock:
            await self._end_in_flight(close_within)
            if consumer is not None:
                try:
                    await asyncio.wait_for(consumer.stop(), close_within)
                except (TimeoutError, AIOKafkaError) as exc:
                    _log.warning("router.close_failed", client="consumer", error=type(exc).__name__)
            await self._producers.close(self._producers.numbers(), close_within)
