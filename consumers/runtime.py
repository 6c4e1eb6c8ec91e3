"""`ClinicConsumer`: what an LPS vendor runs to receive its clinics' messages.

Consumes `<prefix>.deliver.<lps>` in group `<prefix>-<lps>` (read_committed, manual
commits, earliest), hands each record to its clinic's lane (`dispatch`), and
commits per partition only up to the lowest record whose outcome is not final.

Shutdown is bounded: every step that talks to Kafka (commits, leaving the group,
flushing receipts) has `close_timeout` seconds, since aiokafka retries those for
ever while Kafka is down. What was not committed is delivered again later with
the same webhook-id. Under `run()`, a second SIGINT/SIGTERM abandons the shutdown.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from types import TracebackType
from typing import Self

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from contracts import ConfigError, TaskStatus, TaskStatusUpdate, to_bytes
from contracts.headers import CONTENT_TYPE
from contracts.parse import STRUCTURED_CONTENT_TYPE
from contracts.topics import Topics
from prik.kafka import kafka_errors, make_consumer
from prik.logs import get_logger
from prik.metrics import exposition, partition_lags
from prik.quarantine import read_one
from prik.settings import KafkaSettings

from .backoff import Backoff
from .closing import bounded
from .deliverers import Deliverer, WebhookDeliverer
from .dispatch import Dispatcher
from .http_api import RuntimeHttp
from .lanes import assess_health
from .outbox import Outbox
from .pipeline import GONE_REASON, Pipeline
from .receipts import task_answer
from .signing import WebhookSecrets
from .stats import ConsumerMetrics, ConsumerStats, HealthReport, OutcomeEvent

__all__ = ["ClinicConsumer"]

_log = get_logger("prik.consumers")

# A failing clinic keeps at most this many records in memory (at most half the partition's bound).
_LANE_LIMIT = 100


class ClinicConsumer:
    """Delivers one LPS's messages to it, with receipts, retries and dead letters.

    Use as `async with ClinicConsumer(...) as consumer:` or `await start()` /
    `await stop()`; `run()` adds SIGINT/SIGTERM handling for the command line.
    `max_buffered_per_clinic` bounds one clinic's records held in memory: past it
    that clinic's records are read again from Kafka later, so a failing clinic never
    pauses a partition for the others; `max_buffered_per_partition` bounds the rest.
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
        max_buffered_per_clinic: int | None = None,
        http_port: int | None = None,
        http_host: str = "127.0.0.1",
        task_secret: str | Iterable[str] | WebhookSecrets | None = None,
        stall_after: float = 60.0,
        stop_grace: float = 10.0,
        close_timeout: float = 5.0,
        commit_interval: float = 0.5,
        on_outcome: Callable[[OutcomeEvent], None] | None = None,
        group_id: str | None = None,
    ) -> None:
        lane_limit = max_buffered_per_clinic
        if lane_limit is None:
            # Below the partition's bound, so one clinic alone never pauses a partition.
            lane_limit = min(_LANE_LIMIT, max(1, max_buffered_per_partition // 2))
        if max_retry_time <= 0 or attempt_timeout <= 0 or close_timeout <= 0:
            msg = "max_retry_time, attempt_timeout and close_timeout must be positive"
            raise ConfigError(msg)
        if max_buffered_per_partition < 1 or lane_limit < 1:
            msg = "max_buffered_per_partition and max_buffered_per_clinic must be >= 1"
            raise ConfigError(msg)
        self.lps = lps
        self.topics = topics
        self.deliver_topic = topics.deliver(lps)  # also checks the tenant id
        # `prik-<lps>` in production; under a test prefix the group is the test's own too.
        self.group_id = group_id or f"{topics.prefix}-{lps}"
        self.stats = ConsumerStats()
        # Prometheus series at GET /metrics, in a registry of this consumer's own.
        self.metrics = ConsumerMetrics(lps)
        self._kafka = kafka
        self._deliverer = deliverer
        self._stall_after = stall_after
        self._stop_grace = stop_grace
        self._close_timeout = close_timeout
        self._stopping = asyncio.Event()
        self._outbox = Outbox(kafka, client_id=f"prik-consumer-{lps}", close_timeout=close_timeout)
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
            metrics=self.metrics,
        )
        self._dispatch = Dispatcher(
            pipeline=self._pipeline,
            stats=self.stats,
            stopping=self._stopping,
            high_water=max_buffered_per_partition,
            lane_limit=lane_limit,
            commit_interval=commit_interval,
            commit_timeout=close_timeout,
            read_raw=functools.partial(read_one, kafka),
        )
        if task_secret is None and isinstance(deliverer, WebhookDeliverer):
            task_secret = deliverer.secrets
        self._http: RuntimeHttp | None = None
        if http_port is not None:
            self._http = RuntimeHttp(
                host=http_host,
                port=http_port,
                secrets=task_secret,
                health=self.health,
                metrics=self.stats.snapshot,
                answer=self._answer_from_http,
                prometheus=self.prometheus,
            )
        self._loop_task: asyncio.Task[None] | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self._run_task: asyncio.Task[object] | None = None
        self._stop_requested = asyncio.Event()
        self._forced = False
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
        return frozenset(self._dispatch.parts)

    @property
    def endpoint_disabled(self) -> bool:
        """Whether the LPS endpoint answered 410 Gone (then nothing is handed to it again)."""
        return self._pipeline.endpoint.is_disabled

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        try:
            await self._deliverer.start()
            await self._outbox.start()
            consumer = make_consumer(
                self._kafka,
                group_id=self.group_id,
                client_id=f"prik-consumer-{self.lps}",
                # Deliver as soon as the router's transaction commits, not after a long-poll.
                fetch_max_wait_ms=50,
            )
            consumer.subscribe(topics=[self.deliver_topic], listener=self._dispatch.listener())
            # Held before start so a failed start is closed too.
            self._dispatch.consumer = consumer
            with kafka_errors(f"connecting a consumer to Kafka at {self._kafka.bootstrap}"):
                await consumer.start()
            if self._http is not None:
                await self._http.start()
        except BaseException:
            await self._close_resources()
            raise
        self._dispatch.heartbeat = time.monotonic()
        self._loop_task = asyncio.create_task(self._dispatch.run(consumer), name=f"prik-consumer-{self.lps}")
        _log.info("consumer started", lps=self.lps, topic=self.deliver_topic, http_port=self.http_port)

    async def stop(self) -> None:
        """Stop fetching, let in-flight deliveries finish (up to the grace), commit what is final, close.

        Safe to call twice and concurrently; every caller waits for the one shutdown.
        Each step that needs Kafka gets `close_timeout` seconds, so a Kafka outage
        delays the stop by a bounded time rather than for ever.
        """
        if self._stop_task is None:
            self._stop_task = asyncio.create_task(self._shutdown())
        await asyncio.shield(self._stop_task)

    def request_stop(self) -> None:
        """What a signal does under `run()`: the first stops gracefully, a second abandons the shutdown."""
        if self._stop_requested.is_set():
            self._force()
        self._stop_requested.set()

    def _force(self) -> None:
        if self._forced:
            return
        self._forced = True
        _log.warning("second signal: abandoning the shutdown; unfinished messages are delivered again later")
        if self._stop_task is not None and not self._stop_task.done():
            self._stop_task.cancel()
        elif self._run_task is not None and not self._run_task.done():
            self._run_task.cancel()  # still starting
        for task in (self._loop_task, *self._dispatch.tasks()):
            if task is not None and not task.done():
                task.cancel()

    async def run(self) -> None:
        """Run until SIGINT/SIGTERM (or until the fetch loop dies), then stop gracefully.

        A second signal during the shutdown ends it at once: nothing more is committed
        (what was not is delivered again later) and connections are left to the exit.
        """
        loop = asyncio.get_running_loop()
        self._run_task = asyncio.current_task()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            try:
                await self.start()
                assert self._loop_task is not None  # noqa: S101  start() created it
                waiter = asyncio.create_task(self._stop_requested.wait())
                await asyncio.wait({waiter, self._loop_task}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
            finally:
                if not self._forced:
                    await self.stop()
        except asyncio.CancelledError:
            if not self._forced:
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            _log.warning("consumer stopped without a clean shutdown", lps=self.lps)
            return
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        if self._loop_task is not None and self._loop_task.done() and not self._loop_task.cancelled():
            self._loop_task.result()  # the fetch loop's own failure, if it had one

    async def _shutdown(self) -> None:
        self._stopping.set()
        timeout = self._close_timeout
        loop_task = self._loop_task
        if loop_task is not None:
            # The loop ends at its next turn (a fetch waits 200 ms); its own failure is run()'s to report.
            await bounded(asyncio.shield(loop_task), timeout, "stopping the fetch loop")
            if not loop_task.done():
                loop_task.cancel()
        # Deliveries in flight finish (the LPS may already have the message); waits are abandoned.
        tasks = self._dispatch.tasks()
        if tasks:
            _done, late = await asyncio.wait(tasks, timeout=self._stop_grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=timeout)
        await self._dispatch.commit(list(self._dispatch.parts.values()))  # bounded by close_timeout
        await self._close_resources()
        if loop_task is not None:
            _log.info("consumer stopped", lps=self.lps, **self.stats.snapshot())

    async def _close_resources(self) -> None:
        """Close everything, each step within `close_timeout`: a step that hangs is left behind."""
        if self._forced:
            return
        timeout = self._close_timeout
        if self._http is not None:
            await bounded(self._http.stop(), timeout, "closing the HTTP server")
        consumer, self._dispatch.consumer = self._dispatch.consumer, None
        if consumer is not None:
            # Leaving the group revokes the partitions (commit, bounded too) and tells the coordinator.
            await bounded(_stop_consumer(consumer), timeout * 2, "closing the Kafka consumer")
        await bounded(self._outbox.stop(), timeout * 3, "closing the producer")
        await bounded(self._deliverer.close(), timeout, "closing the deliverer")

    # --- health -----------------------------------------------------------------------------

    def health(self) -> HealthReport:
        """Healthy while fetching and no clinic's work is overdue; idle with nothing pending is healthy.

        A disabled endpoint (it answered 410 Gone) is unhealthy: messages are being
        dead-lettered until an operator fixes the endpoint and restarts the consumer.
        """
        running = self._started and not self._stopping.is_set() and self._dispatch.consumer is not None
        loop_alive = self._loop_task is not None and not self._loop_task.done()
        report = assess_health(
            running=running and loop_alive,
            fetched_ago=time.monotonic() - self._dispatch.heartbeat,
            parts=self._dispatch.parts.values(),
            stall_after=self._stall_after,
            progress=self.stats.progress,
        )
        if self._pipeline.endpoint.is_disabled:
            reason = f"webhook endpoint disabled: {GONE_REASON}; messages are dead-lettered"
            return HealthReport(False, reason, report.pending, report.progress, endpoint="disabled")
        return report

    # --- metrics ----------------------------------------------------------------------------

    async def prometheus(self) -> bytes:
        """The Prometheus exposition, with the values read at scrape time (age, lag) brought up to date."""
        self.metrics.undelivered(self._oldest_unfinished())
        consumer = self._dispatch.consumer
        lags = [] if consumer is None else await partition_lags(consumer, list(self._dispatch.parts))
        self.metrics.lags(self.group_id, lags)
        return exposition(self.metrics.registry)

    def _oldest_unfinished(self) -> datetime | None:
        """The time of the oldest message held in any clinic's lane (those deferred are younger)."""
        return min(
            (
                record.message.time
                for part in self._dispatch.parts.values()
                for lane in part.lanes.values()
                for record in lane.queue
                if record.message is not None
            ),
            default=None,
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


async def _stop_consumer(consumer: AIOKafkaConsumer) -> None:
    await consumer.stop()
