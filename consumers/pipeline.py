"""One consumed record, taken to its final outcome: delivered, expired or dead-lettered.

The steps, in order, for a message of one clinic:
1. past its effective expiry -> `expired` receipt, never delivered;
2. deliver; accepted -> `delivered` receipt;
3. refused for good (other 4xx, `DeliveryRefused`) -> dead letter + receipt at once;
4. 410 Gone (`EndpointGone`) -> dead letter + receipt, and the endpoint is disabled
   (`Endpoint`): no message is handed to it again while this consumer runs;
5. otherwise wait (full-jitter backoff, at least `Retry-After`) and go to 1, until
   `max_retry_time` has passed since the first attempt -> dead letter + receipt.
The receipt (and dead letter) is written before the caller marks the offset done,
so a crash in between redelivers rather than loses. A receiver's reason is
checked (`safe_reason`) before it reaches a dead-letter header or a receipt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka.structs import TopicPartition

from contracts import (
    STRUCTURED_CONTENT_TYPE,
    ErrorStage,
    KafkaError,
    Message,
    NotAuthorisedError,
    Outcome,
    ParseError,
    Receipt,
    TooLargeError,
    effective_expiry,
    is_expired,
)
from contracts.headers import (
    CONTENT_TYPE,
    ERROR_REASON,
    ERROR_STAGE,
    ORIGINAL_OFFSET,
    ORIGINAL_PARTITION,
    ORIGINAL_TOPIC,
    ROUTE,
)
from contracts.topics import Topics
from prik.logs import debug_enabled, get_logger, trace_fields

from .backoff import Backoff
from .deadline import within
from .deliverers import Deliverer, Delivery
from .errors import DeliveryRefused, EndpointGone, RetriableDeliveryError, safe_reason
from .message_log import about
from .outbox import Outbox
from .receipts import ReceiptWriter
from .stats import ConsumerMetrics, ConsumerStats, OutcomeEvent

__all__ = ["GONE_REASON", "Endpoint", "Phase", "Pipeline", "Record"]

_log = get_logger("prik.consumers")
_ERROR_HEADERS = frozenset({ERROR_STAGE, ERROR_REASON, ORIGINAL_TOPIC, ORIGINAL_PARTITION, ORIGINAL_OFFSET})
GONE_REASON = "endpoint gone (410)"
_STRUCTURED = (CONTENT_TYPE, STRUCTURED_CONTENT_TYPE.encode())


@dataclass(slots=True)
class Record:
    """A consumed record waiting for its outcome; `message` is None when it could not be read."""

    tp: TopicPartition
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    clinic: str
    message: Message | None
    error: ParseError | None = None
    # Set when reading the record itself failed inside the consumer (stage `internal`).
    internal: str | None = None


@dataclass(slots=True)
class Phase:
    """What a clinic's worker is doing and by when it should be done (monotonic), for health."""

    name: str = "idle"
    due: float | None = None

    def enter(self, name: str, budget: float | None) -> None:
        self.name = name
        self.due = None if budget is None else time.monotonic() + budget


class Endpoint:
    """Whether the LPS endpoint still takes messages. A 410 Gone disables it for good.

    Standard Webhooks: 410 means the endpoint is gone, so it is not called again.
    What follows a 410 is dead-lettered, with a `dead-lettered` receipt (reason
    "endpoint gone (410)"), rather than left unconsumed for an operator. Both lose
    nothing: the dead-letter topic keeps every original record for `prik dlq replay`
    once the LPS has a working endpoint (and a restarted consumer calls it again),
    but only dead-lettering tells each sender now (DESIGN: "410 = endpoint gone
    (stop, dead-letter)"), instead of notices silently expiring in the topic.
    `GET /health` reports the consumer unhealthy with the endpoint disabled.
    """

    __slots__ = ("disabled", "since")

    def __init__(self) -> None:
        self.disabled = asyncio.Event()
        self.since: datetime | None = None

    @property
    def is_disabled(self) -> bool:
        return self.disabled.is_set()

    def disable(self) -> None:
        if not self.disabled.is_set():
            self.since = datetime.now(UTC)
            self.disabled.set()


class _Abandoned(Exception):  # noqa: N818  control flow, not an error: the runtime is stopping
    pass


class Pipeline:
    """The delivery rules, shared by every clinic's worker."""

    def __init__(
        self,
        *,
        lps: str,
        topics: Topics,
        deliverer: Deliverer,
        outbox: Outbox,
        stats: ConsumerStats,
        stopping: asyncio.Event,
        backoff: Backoff,
        max_retry_time: float,
        attempt_timeout: float,
        publish_budget: float = 30.0,
        on_outcome: Callable[[OutcomeEvent], None] | None = None,
        endpoint: Endpoint | None = None,
        metrics: ConsumerMetrics | None = None,
    ) -> None:
        self.endpoint = endpoint or Endpoint()
        self.metrics = metrics or ConsumerMetrics(lps)
        self._lps = lps
        self._topics = topics
        # Checked once here rather than for every receipt (Topics checks the name each call).
        self._receipts_topic = topics.ingress(lps)
        self._receipts = ReceiptWriter(lps)
        self._deliverer = deliverer
        self._outbox = outbox
        self._stats = stats
        self._stopping = stopping
        self._backoff = backoff
        self._max_retry_time = max_retry_time
        self._attempt_timeout = attempt_timeout
        self._publish_budget = publish_budget
        self._on_outcome = on_outcome

    async def finish(self, record: Record, phase: Phase) -> bool:
        """Take `record` to a final outcome; False when the runtime stopped first (not final)."""
        try:
            await self._finish(record, phase)
        except _Abandoned:
            return False
        finally:
            phase.enter("idle", None)
        return True

    async def _finish(self, record: Record, phase: Phase) -> None:
        message = record.message
        if message is None:
            # The router writes only valid messages here, so this is a bug or a stray producer:
            # keep the bytes for an operator; with no trustworthy sender there is no receipt.
            error = record.error
            if record.internal is not None:
                stage, reason = ErrorStage.INTERNAL.value, record.internal
            elif error is not None:
                stage, reason = error.stage, error.reason
            else:
                stage, reason = ErrorStage.PARSE.value, "unreadable record"
            await self._dead_letter(record, phase, stage=stage, reason=reason)
            self._stats.dead_lettered += 1
            self.metrics.outcome(Outcome.DEAD_LETTERED)
            return
        if isinstance(message, Receipt):
            # Receipts are for senders, not clinics, and a receipt never gets a receipt.
            _log.warning(
                "skipping a receipt on the delivery topic",
                message_id=message.id,
                **trace_fields(message.traceparent),
            )
            self._stats.skipped += 1
            return
        await self._deliver_with_retries(record, message, phase)

    async def _deliver_with_retries(self, record: Record, message: Message, phase: Phase) -> None:
        attempts = 0
        first_attempt: float | None = None
        last_reason = ""
        # Written by the first attempt that needs it (a webhook), then kept for the retries.
        body: bytes | None = None
        while True:
            now = datetime.now(UTC)
            if is_expired(message, now):
                reason = "expired before delivery"
                if attempts:
                    reason = f"expired after {attempts} failed attempts (last: {last_reason})"
                await self._final(record, message, phase, Outcome.EXPIRED, attempts=attempts, reason=reason)
                return
            if self._stopping.is_set():
                raise _Abandoned
            if self.endpoint.is_disabled:
                await self._final(
                    record, message, phase, Outcome.DEAD_LETTERED, attempts=attempts, reason=GONE_REASON
                )
                return
            attempts += 1
            self._stats.attempts += 1
            if first_attempt is None:
                first_attempt = time.monotonic()
            phase.enter("deliver", self._attempt_timeout)
            delivery = Delivery(message, body, record.clinic, attempts)
            outcome, why, retry_after = await self._attempt(delivery)
            body = delivery.written
            if outcome is not None:
                await self._final(record, message, phase, outcome, attempts=attempts, reason=why)
                return
            last_reason = why or "delivery failed"
            elapsed = time.monotonic() - first_attempt
            remaining = self._max_retry_time - elapsed
            if remaining <= 0:
                reason = f"gave up after {attempts} attempts in {elapsed:.0f} s (last: {last_reason})"
                about(message, record.clinic).warning("giving up, dead-lettering", attempts=attempts)
                await self._final(
                    record, message, phase, Outcome.DEAD_LETTERED, attempts=attempts, reason=reason
                )
                return
            # One last attempt lands at the deadline rather than none after a long wait.
            delay = min(self._backoff.delay(attempts, retry_after), remaining)
            expiry = effective_expiry(message)
            if expiry is not None:
                # Wake at expiry so the `expired` receipt is not late.
                delay = min(delay, max(0.0, (expiry - datetime.now(UTC)).total_seconds()))
            self._stats.retries += 1
            about(message, record.clinic).info(
                "delivery failed, will retry", reason=last_reason, attempts=attempts, delay=round(delay, 3)
            )
            phase.enter("wait", delay)
            if await self._sleep(delay):
                raise _Abandoned

    async def _attempt(self, delivery: Delivery) -> tuple[Outcome | None, str | None, float | None]:
        """One attempt: (the final outcome, or None to retry; the reason; the receiver's Retry-After)."""
        message = delivery.message
        try:
            # A callback that never returns must not hold its clinic for ever (the timer
            # is armed once the attempt waits: one that returns at once needs none).
            await within(self._attempt_timeout, self._deliverer.deliver(delivery))
        except EndpointGone:
            self.metrics.attempt("gone")
            if not self.endpoint.is_disabled:
                about(message, delivery.clinic, delivery.attempt).warning(
                    "endpoint answered 410 Gone: disabled, dead-lettering what follows"
                )
            self.endpoint.disable()
            self._stats.endpoint_disabled = True
            return Outcome.DEAD_LETTERED, GONE_REASON, None
        except DeliveryRefused as exc:
            self.metrics.attempt("refused")
            # `reason` is a plain attribute a vendor's subclass may have set: check it again.
            reason = safe_reason(exc.reason)
            about(message, delivery.clinic, delivery.attempt).warning(
                "delivery refused, dead-lettering", reason=reason
            )
            return Outcome.DEAD_LETTERED, reason, None
        except RetriableDeliveryError as exc:
            self.metrics.attempt("retry")
            return None, safe_reason(exc.reason), exc.retry_after
        except TimeoutError:
            self.metrics.attempt("timeout")
            return None, f"delivery took longer than {self._attempt_timeout:g} s", None
        except Exception as exc:  # noqa: BLE001  a custom deliverer's failure is retried, like any other
            self.metrics.attempt("error")
            return None, f"deliverer raised {type(exc).__name__}", None
        self.metrics.attempt("ok")
        return Outcome.DELIVERED, None, None

    async def _sleep(self, seconds: float) -> bool:
        """Wait `seconds`, or less when the endpoint is disabled; True when the runtime began stopping."""
        if not self.endpoint.is_disabled:
            waits = {
                asyncio.ensure_future(self._stopping.wait()),
                asyncio.ensure_future(self.endpoint.disabled.wait()),
            }
            try:
                await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()
        return self._stopping.is_set()

    async def _final(
        self,
        record: Record,
        message: Message,
        phase: Phase,
        outcome: Outcome,
        *,
        attempts: int,
        reason: str | None,
        stage: ErrorStage = ErrorStage.DELIVER,
    ) -> None:
        # The same checked, capped text in the dead letter, the receipt and the hook.
        reason = safe_reason(reason) if reason else None
        if outcome is Outcome.DEAD_LETTERED:
            await self._dead_letter(record, phase, stage=stage.value, reason=reason or "")
        at = datetime.now(UTC)
        if outcome is Outcome.DELIVERED:
            self.metrics.answered(message.time, at)
        value = self._receipts.value(
            message, outcome, recipient=record.clinic, attempts=attempts, reason=reason, at=at
        )
        phase.enter("publish", self._publish_budget)
        await self._publish(
            self._receipts_topic, key=message.id.encode(), value=value, headers=_receipt_headers(record)
        )
        self._stats.receipts += 1
        self._stats.count(outcome)
        self.metrics.outcome(outcome)
        self._stats.progress = at
        if debug_enabled():
            _log.debug(
                "final outcome",
                message_id=message.id,
                tenant=message.source,
                clinic=record.clinic,
                outcome=outcome.value,
                **trace_fields(message.traceparent),
            )
        if self._on_outcome is not None:
            self._on_outcome(
                OutcomeEvent(
                    message_id=message.id,
                    message_type=message.type,
                    message_source=message.source,
                    message_time=message.time,
                    clinic=record.clinic,
                    outcome=outcome,
                    attempts=attempts,
                    reason=reason,
                    at=at,
                )
            )

    async def finish_internally(self, record: Record, phase: Phase, exc: Exception) -> bool:
        """A bug met this record: dead-letter it (stage `internal`) and tell its sender, then go on.

        False when even that could not be written (the record stays unfinished).
        """
        try:
            await self._fail_internally(record, phase, exc)
        except Exception:  # noqa: BLE001  the caller backs off and tries the record again
            return False
        finally:
            phase.enter("idle", None)
        return True

    async def _fail_internally(self, record: Record, phase: Phase, exc: Exception) -> None:
        # The exception's type only: its message may quote the record (and a CPR with it).
        reason = f"the consumer failed on this record ({type(exc).__name__})"
        message = record.message
        if message is None or isinstance(message, Receipt):
            await self._dead_letter(record, phase, stage=ErrorStage.INTERNAL.value, reason=reason)
            self._stats.dead_lettered += 1
            self.metrics.outcome(Outcome.DEAD_LETTERED)
            return
        stage = ErrorStage.INTERNAL
        await self._final(
            record, message, phase, Outcome.DEAD_LETTERED, attempts=0, reason=reason, stage=stage
        )

    async def _dead_letter(self, record: Record, phase: Phase, *, stage: str, reason: str) -> None:
        headers = [(name, value) for name, value in record.headers if name not in _ERROR_HEADERS]
        headers += [
            (ERROR_STAGE, stage.encode()),
            (ERROR_REASON, safe_reason(reason).encode()),
            (ORIGINAL_TOPIC, record.tp.topic.encode()),
            (ORIGINAL_PARTITION, str(record.tp.partition).encode()),
            (ORIGINAL_OFFSET, str(record.offset).encode()),
        ]
        phase.enter("publish", self._publish_budget)
        try:
            await self._publish(self._topics.dlq, key=record.key, value=record.value, headers=headers)
        except TooLargeError:
            # The original does not fit next to the error headers: keep where it was instead.
            _log.warning("dead letter too large, keeping its position only", offset=record.offset)
            await self._publish(self._topics.dlq, key=record.key, value=b"", headers=headers)
        self._stats.progress = datetime.now(UTC)

    async def _publish(
        self, topic: str, *, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        try:
            await self._outbox.send(topic, key=key, value=value, headers=headers, abandon=self._stopping)
        except TooLargeError:
            raise
        except (KafkaError, NotAuthorisedError) as exc:
            if exc.retriable:
                # Not written means not final: the record stays uncommitted and comes back.
                raise _Abandoned from exc
            # Refused for good (not authorised, no such topic): retrying would freeze the
            # clinic's lane for ever. Say so loudly; health reports it.
            self._stats.unwritable += 1
            _log.error("kafka refused a write for good, going on", topic=topic, error=type(exc).__name__)
        except Exception as exc:
            raise _Abandoned from exc


def _receipt_headers(record: Record) -> list[tuple[str, bytes]]:
    """A receipt's headers: structured content, and the delivery's `prik-route` token (its first),
    echoed so the router accepts the receipt.
    """
    for name, value in record.headers:
        if name == ROUTE:
            return [_STRUCTURED, (name, value)]
    return [_STRUCTURED]
