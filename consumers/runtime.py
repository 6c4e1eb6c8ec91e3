"""`ClinicConsumer`: what an LPS vendor runs to receive its clinics' messages.

Consumes `<prefix>.deliver.<lps>` in group `<prefix>-<lps>` (read_committed, manual
commits, earliest), hands each record to its clinic's lane, and commits per
partition only up to the lowest record whose outcome is not final. Commits and
rebalances are serialised: on revoke, the lanes of the revoked partitions are
stopped, what is final is committed, and the rest is left for the next owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Self

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from contracts import ConfigError, ParseError, TaskStatus, TaskStatusUpdate, parse, to_bytes
from contracts.headers import CONTENT_TYPE
from contracts.parse import STRUCTURED_CONTENT_TYPE
from contracts.topics import Topics
from prik.kafka import kafka_errors, make_consumer
from prik.logs import get_logger
from prik.settings import KafkaSettings

from .backoff import Backoff
from .deliverers import Deliverer, WebhookDeliverer
from .http_api import RuntimeHttp
from .lanes import Lane, PartitionWork, assess_health, clinic_of
from .outbox import Outbox
from .pipeline import Pipeline, Record
from .receipts import task_answer
from .stats import ConsumerStats, HealthReport, OutcomeEvent

__all__ = ["ClinicConsumer"]

_log = get_logger("prik.consumers")


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no types
    def __init__(self, owner: ClinicConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._owner._on_revoked(revoked)  # noqa: SLF001  the listener is the runtime's own part

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._owner._on_assigned(assigned)  # noqa: SLF001


class ClinicConsumer:
    """Delivers one LPS's messages to it, with receipts, retries and dead letters.

    Use as `async with ClinicConsumer(...) as consumer:` or `await start()` /
    `await stop()`; `run()` adds SIGINT/SIGTERM handling for the command line.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: Topics,
        lps: str,
        deliverer: Deliverer,
        *,
        max_retry_time: float = 3600.0,
        backoff: Backoff | None = None,
        attempt_timeout: float = 30.0,
        max_buffered_per_partition: int = 1000,
        http_port: int | None = None,
        http_host: str = "127.0.0.1",
        task_secret: str | None = None,
        stall_after: float = 60.0,
        stop_grace: float = 10.0,
        commit_interval: float = 0.5,
        on_outcome: Callable[[OutcomeEvent], None] | None = None,
        group_id: str | None = None,
    ) -> None:
        if max_retry_time <= 0 or attempt_timeout <= 0 or max_buffered_per_partition < 1:
            msg = "max_retry_time and attempt_timeout must be positive, max_buffered_per_partition >= 1"
            raise ConfigError(msg)
        self.lps = lps
        self.topics = topics
        self.deliver_topic = topics.deliver(lps)  # also checks the tenant id
        # `prik-<lps>` in production; under a test prefix the group is the test's own too.
        self.group_id = group_id or f"{topics.prefix}-{lps}"
        self.stats = ConsumerStats()
        self._kafka = kafka
        self._deliverer = deliverer
        self._high_water = max_buffered_per_partition
        self._low_water = max(1, max_buffered_per_partition // 2)
        self._stall_after = stall_after
        self._stop_grace = stop_grace
        self._commit_interval = commit_interval
        self._stopping = asyncio.Event()
        self._outbox = Outbox(kafka, client_id=f"prik-consumer-{lps}")
        self._pipeline = Pipeline(
            lps=lps,
            topics=topics,
            deliverer=deliverer,
            outbox=self._outbox,
            stats=self.stats,
            stopping=self._stopping,
            backoff=backoff or Backoff(),
            max_retry_time=max_retry_time,
            attempt_timeout=attempt_timeout,
            on_outcome=on_outcome,
        )
        if task_secret is None and isinstance(deliverer, WebhookDeliverer):
            task_secret = deliverer.secret
        self._http: RuntimeHttp | None = None
        if http_port is not None:
            self._http = RuntimeHttp(
                host=http_host,
                port=http_port,
                secret=task_secret,
                health=self.health,
                metrics=self.stats.snapshot,
                answer=self._answer_from_http,
            )
        self._consumer: AIOKafkaConsumer | None = None
        self._parts: dict[TopicPartition, PartitionWork] = {}
        self._commit_lock = asyncio.Lock()
        self._loop_task: asyncio.Task[None] | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self._heartbeat = time.monotonic()
        self._started = False

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def http_port(self) -> int | None:
        """The bound port of the health/task HTTP server, once started (None without one)."""
        return self._http.port if self._http is not None else None

    @property
    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions of the delivery topic this consumer owns right now."""
        return frozenset(self._parts)

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        try:
            await self._deliverer.start()
            await self._outbox.start()
            consumer = make_consumer(
                self._kafka, group_id=self.group_id, client_id=f"prik-consumer-{self.lps}"
            )
            consumer.subscribe(topics=[self.deliver_topic], listener=_Listener(self))
            # Held before start so a failed start is closed too.
            self._consumer = consumer
            with kafka_errors(f"connecting a consumer to Kafka at {self._kafka.bootstrap}"):
                await consumer.start()
            if self._http is not None:
                await self._http.start()
        except BaseException:
            await self._close_resources()
            raise
        self._heartbeat = time.monotonic()
        self._loop_task = asyncio.create_task(self._consume_loop(consumer), name=f"prik-consumer-{self.lps}")
        _log.info("consumer started", lps=self.lps, topic=self.deliver_topic, http_port=self.http_port)

    async def stop(self) -> None:
        """Stop fetching, let in-flight deliveries finish (up to the grace), commit what is final, close.

        Safe to call twice and concurrently; every caller waits for the one shutdown.
        """
        if self._stop_task is None:
            self._stop_task = asyncio.create_task(self._shutdown())
        await asyncio.shield(self._stop_task)

    async def run(self) -> None:
        """Run until SIGINT/SIGTERM (or until the fetch loop dies), then stop gracefully."""
        loop = asyncio.get_running_loop()
        signalled = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, signalled.set)
        try:
            await self.start()
            assert self._loop_task is not None  # noqa: S101  start() created it
            waiter = asyncio.create_task(signalled.wait())
            await asyncio.wait({waiter, self._loop_task}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
        finally:
            await self.stop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        if self._loop_task is not None and self._loop_task.done() and not self._loop_task.cancelled():
            self._loop_task.result()  # the fetch loop's own failure, if it had one

    async def _shutdown(self) -> None:
        self._stopping.set()
        if self._loop_task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._loop_task), timeout=5.0)
            except TimeoutError:
                self._loop_task.cancel()
            except Exception:  # noqa: BLE001  its failure is reported by run(); shutdown goes on
                _log.exception("fetch loop failed")
        # Deliveries in flight finish (the LPS may already have the message); waits are abandoned.
        tasks = [task for part in self._parts.values() for task in part.tasks()]
        if tasks:
            _done, late = await asyncio.wait(tasks, timeout=self._stop_grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self._commit(list(self._parts.values()))
        await self._close_resources()
        if self._loop_task is not None:
            _log.info("consumer stopped", lps=self.lps, **self.stats.snapshot())

    async def _close_resources(self) -> None:
        if self._http is not None:
            await self._http.stop()
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(AIOKafkaError):
                await consumer.stop()
        await self._outbox.stop()
        await self._deliverer.close()

    # --- the fetch loop ---------------------------------------------------------------------

    async def _consume_loop(self, consumer: AIOKafkaConsumer) -> None:
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
            failures = 0
            self._heartbeat = time.monotonic()
            for tp, records in batches.items():
                part = self._parts.get(tp)
                if part is None:
                    continue  # revoked while these were in flight: the next owner reads them
                for record in records:
                    self._accept(part, record)
                self._apply_backpressure(part)
            if time.monotonic() >= next_commit:
                await self._commit(list(self._parts.values()))
                next_commit = time.monotonic() + self._commit_interval

    def _accept(self, part: PartitionWork, record: ConsumerRecord[bytes, bytes]) -> None:
        headers = [(name, bytes(value)) for name, value in (record.headers or ())]
        value: bytes = record.value if record.value is not None else b""
        try:
            message = parse(value, headers)
            error = None
        except ParseError as exc:
            message, error = None, exc
        clinic = clinic_of(record.key, message.recipient if message is not None else None)
        item = Record(part.tp, record.offset, record.key, value, headers, clinic, message, error)
        part.tracker.add(record.offset)
        self.stats.consumed += 1
        self.stats.in_flight[clinic] += 1
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
                except Exception:  # noqa: BLE001  logged with its traceback below
                    # A bug must not silently stall the clinic: log it, back off, try again.
                    _log.exception("delivery pipeline failed", clinic=lane.clinic, offset=record.offset)
                    lane.phase.enter("error", 0.0)
                    await asyncio.sleep(1.0)
                    continue
                if not final:
                    return
                lane.queue.popleft()
                part.tracker.done(record.offset)
                self._forget(lane.clinic)
                self._apply_backpressure(part)
        finally:
            lane.task = None
            if not lane.queue and part.lanes.get(lane.clinic) is lane:
                del part.lanes[lane.clinic]

    def _forget(self, clinic: str, count: int = 1) -> None:
        left = self.stats.in_flight[clinic] - count
        if left > 0:
            self.stats.in_flight[clinic] = left
        else:
            del self.stats.in_flight[clinic]

    def _apply_backpressure(self, part: PartitionWork) -> None:
        """Pause a partition's fetch while too much of it is unfinished, so memory stays bounded."""
        consumer = self._consumer
        if consumer is None or self._parts.get(part.tp) is not part:
            return
        pending = part.tracker.pending
        if not part.paused and pending >= self._high_water:
            consumer.pause(part.tp)
            part.paused = True
            self.stats.paused_partitions += 1
        elif part.paused and pending <= self._low_water:
            consumer.resume(part.tp)
            part.paused = False
            self.stats.paused_partitions -= 1

    # --- commits and rebalances -----------------------------------------------------------

    async def _commit(self, parts: list[PartitionWork]) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        # One lock for the fetch loop's commits and the revoke handler's, so a late commit
        # can never move a partition's committed offset backwards.
        async with self._commit_lock:
            offsets = {part.tp: off for part in parts if (off := part.to_commit()) is not None}
            if not offsets:
                return
            try:
                await consumer.commit(offsets)
            except AIOKafkaError as exc:
                # CommitFailed (rebalanced), IllegalState (not assigned) or a broker error:
                # nothing is lost, the records are read again by whoever owns them next.
                _log.warning("offset commit failed", error=type(exc).__name__)
                return
            for part in parts:
                if part.tp in offsets:
                    part.committed = offsets[part.tp]

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        parts = [part for tp in revoked if (part := self._parts.pop(tp, None)) is not None]
        tasks = [task for part in parts for task in part.tasks()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for part in parts:
            for lane in part.lanes.values():
                self._forget(lane.clinic, len(lane.queue))
            if part.paused:
                self.stats.paused_partitions -= 1
        await self._commit(parts)
        if parts:
            _log.info("partitions revoked", partitions=sorted(p.tp.partition for p in parts))

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        for tp in assigned:
            self._parts.setdefault(tp, PartitionWork(tp))
        if assigned:
            _log.info("partitions assigned", partitions=sorted(tp.partition for tp in assigned))

    # --- health -----------------------------------------------------------------------------

    def health(self) -> HealthReport:
        """Healthy while fetching and no clinic's work is overdue; idle with nothing pending is healthy."""
        running = self._started and not self._stopping.is_set() and self._consumer is not None
        loop_alive = self._loop_task is not None and not self._loop_task.done()
        return assess_health(
            running=running and loop_alive,
            fetched_ago=time.monotonic() - self._heartbeat,
            parts=self._parts.values(),
            stall_after=self._stall_after,
            progress=self.stats.progress,
        )

    # --- tasks ------------------------------------------------------------------------------

    async def answer_task(
        self,
        task_id: uuid.UUID | str,
        status: TaskStatus | str,
        reason: str | None = None,
        *,
        business_status: str | None = None,
        timeout: float = 30.0,  # noqa: ASYNC109  a budget for the publish retries, not one await
    ) -> TaskStatusUpdate:
        """Publish the clinic's new status of a task on this LPS's ingress topic (keyed by task id).

        Raises `TaskAnswerRefused` for an id, status or reason the contract refuses, and
        `KafkaError` when Kafka does not take it within `timeout` seconds.
        """
        update = task_answer(self.lps, task_id, status, reason, business_status)
        await self._outbox.send(
            self.topics.ingress(self.lps),
            key=str(update.data.task_id).encode(),
            value=to_bytes(update),
            headers=[(CONTENT_TYPE, STRUCTURED_CONTENT_TYPE.encode())],
            timeout=timeout,
        )
        _log.info("task status published", task_id=str(update.data.task_id), status=update.data.status.value)
        return update

    async def _answer_from_http(
        self, task_id: str, status: str, reason: str | None, business_status: str | None
    ) -> TaskStatusUpdate:
        return await self.answer_task(task_id, status, reason, business_status=business_status)
