"""The clinic side: per LPS vendor a reference LPS server and the consumer delivering to it.

Each vendor's `ClinicConsumer` delivers by signed webhook to its own
`ReferenceLps`. When a clinic receives a task it answers it the way a practice
would, through the consumer's Python API: received, then accepted, in progress
and completed (now and then the clinic declines it instead).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable, Sequence

from consumers import (
    Backoff,
    ClinicConsumer,
    Received,
    ReferenceLps,
    TaskAnswerRefused,
    WebhookDeliverer,
)
from contracts import KafkaError, MessageType, TaskStatus, Topics, codec
from prik.logs import get_logger
from prik.settings import KafkaSettings

from .tally import Tally, row_of

__all__ = ["ClinicSide", "VendorCounts"]

_log = get_logger("prik.demo")

_COMPLETES = (TaskStatus.RECEIVED, TaskStatus.ACCEPTED, TaskStatus.IN_PROGRESS, TaskStatus.COMPLETED)
_DECLINES = (TaskStatus.RECEIVED, TaskStatus.REJECTED)
_DECLINE_SHARE = 0.1
# Short retries: the demo's outage lasts seconds, and the queue behind it should move on promptly.
_DEMO_BACKOFF = Backoff(base=0.2, cap=1.0)


class VendorCounts:
    """What one vendor's consumer and reference server have done so far."""

    def __init__(self, lps: str, server: ReferenceLps, consumer: ClinicConsumer) -> None:
        self.lps = lps
        self._server = server
        self._consumer = consumer

    @property
    def received(self) -> int:
        return len(self._server.received)

    @property
    def retries(self) -> int:
        return self._consumer.stats.retries

    @property
    def failed_answers(self) -> int:
        return sum(n for (_clinic, status), n in self._server.answers.items() if status >= 300)


class ClinicSide:
    """`start()`, then `stop()`; `fail(lps, sor, seconds)` makes one clinic's endpoint answer 503."""

    def __init__(
        self,
        kafka: Callable[[str], KafkaSettings],
        topics: Topics,
        vendors: Sequence[str],
        tally: Tally,
        *,
        max_retry_time: float,
        seed: int | None = None,
    ) -> None:
        self._kafka = kafka
        self._topics = topics
        self._vendors = tuple(vendors)
        self._tally = tally
        self._max_retry_time = max_retry_time
        self._rng = random.Random(seed)  # noqa: S311  pacing, not secrets
        self.servers: dict[str, ReferenceLps] = {}
        self.consumers: dict[str, ClinicConsumer] = {}
        self._answering: set[asyncio.Task[None]] = set()
        self.answer_errors = 0

    @property
    def vendors(self) -> list[VendorCounts]:
        return [VendorCounts(lps, self.servers[lps], self.consumers[lps]) for lps in self.consumers]

    @property
    def busy(self) -> bool:
        """Whether a clinic is still answering a task."""
        return bool(self._answering)

    async def start(self) -> None:
        for lps in self._vendors:
            server = ReferenceLps(on_receive=self._hook(lps))
            await server.start()
            self.servers[lps] = server
            consumer = ClinicConsumer(
                self._kafka(lps),
                self._topics,
                lps,
                WebhookDeliverer(server.url, server.secret, total_timeout=5.0),
                max_retry_time=self._max_retry_time,
                backoff=_DEMO_BACKOFF,
                stop_grace=3.0,
            )
            await consumer.start()
            self.consumers[lps] = consumer

    async def stop(self) -> None:
        """Abandon unfinished answers, stop the consumers (they commit what is final), then the servers."""
        for task in list(self._answering):
            task.cancel()
        await asyncio.gather(*self._answering, return_exceptions=True)
        await asyncio.gather(*(c.stop() for c in self.consumers.values()), return_exceptions=True)
        await asyncio.gather(*(s.stop() for s in self.servers.values()), return_exceptions=True)

    def fail(self, lps: str, sor: str, for_seconds: float) -> None:
        self.servers[lps].fail_clinic(sor, 503, for_seconds=for_seconds)

    def _hook(self, lps: str) -> Callable[[Received], None]:
        def on_receive(item: Received) -> None:
            self._tally.lps_received(item.message_id, item.received_at)
            if item.type == MessageType.TASK_REQUEST:
                body = codec.loads(item.body)
                task_id = body["data"]["task_id"] if isinstance(body, dict) else None
                if isinstance(task_id, str):
                    task = asyncio.create_task(self._answer(lps, task_id, item.clinic))
                    self._answering.add(task)
                    task.add_done_callback(self._answering.discard)

        return on_receive

    async def _answer(self, lps: str, task_id: str, clinic: str) -> None:
        consumer = self.consumers[lps]
        steps = _DECLINES if self._rng.random() < _DECLINE_SHARE else _COMPLETES
        for status in steps:
            await asyncio.sleep(self._rng.uniform(0.1, 0.8))
            reason = "Patienten er ikke tilknyttet klinikken" if status is TaskStatus.REJECTED else None
            try:
                update = await consumer.answer_task(uuid.UUID(task_id), status, reason, timeout=10.0)
            except (KafkaError, TaskAnswerRefused) as exc:
                self.answer_errors += 1
                _log.warning("demo task answer failed", lps=lps, error=str(exc))
                return
            self._tally.sent(update.source, update.id, row_of(update.type), update.time, clinic=clinic)
