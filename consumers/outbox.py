"""The consumer's one Kafka producer: receipts, dead letters and task statuses.

Sends retry until they succeed, the runtime stops, or a caller's time runs out:
a receipt or dead letter that cannot be written keeps its message unfinished
(never committed), which is what at-least-once needs. A producer that reports a
fatal error is replaced (aiokafka #1017: an idempotent producer stays wedged
on OutOfOrderSequenceNumber until it is restarted). Closing is bounded: aiokafka's
`flush` and `stop` wait for ever while Kafka is unreachable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnsupportedVersionError,
)
from aiokafka.errors import KafkaError as AIOKafkaError

from contracts import KafkaError, TooLargeError
from prik.kafka import FATAL_PRODUCER_ERRORS, kafka_errors, make_producer, translate
from prik.logs import get_logger
from prik.settings import KafkaSettings

from .backoff import Backoff
from .batching import BatchWriter
from .closing import bounded

__all__ = ["REFUSED_FOR_GOOD", "TOO_LARGE", "Outbox"]

_log = get_logger("prik.consumers.outbox")

Headers = Sequence[tuple[str, bytes]]

TOO_LARGE: tuple[type[AIOKafkaError], ...] = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
)
# Kafka refuses these for good: retrying would freeze the clinic's lane for ever.
REFUSED_FOR_GOOD: tuple[type[AIOKafkaError], ...] = (
    *TOO_LARGE,
    TopicAuthorizationFailedError,
    ClusterAuthorizationFailedError,
    InvalidTopicError,
    UnsupportedVersionError,
)


class Outbox:
    """Keyed, acknowledged (acks=all, idempotent) sends that survive transient Kafka trouble."""

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        client_id: str,
        retry: Backoff | None = None,
        close_timeout: float = 5.0,
    ) -> None:
        self._kafka = kafka
        self._close_timeout = close_timeout
        self._client_id = client_id
        self._retry = retry or Backoff(base=0.2, cap=5.0)
        self._producer: AIOKafkaProducer | None = None
        self._restart_lock = asyncio.Lock()
        self._closed = asyncio.Event()
        self._batches = BatchWriter()

    async def start(self) -> None:
        producer = make_producer(self._kafka, client_id=self._client_id)
        try:
            with kafka_errors(f"connecting a producer to Kafka at {self._kafka.bootstrap}"):
                await producer.start()
        except BaseException:
            await producer.stop()  # a failed start still holds a client and its connections
            raise
        self._producer = producer

    async def stop(self) -> None:
        """Flush what was handed over, then close, each within `close_timeout`. Safe to call twice.

        A send still waiting for its acknowledgement when the flush gives up raises to its
        caller, so its record stays unfinished (uncommitted) and is handled again later.
        """
        self._closed.set()
        producer, self._producer = self._producer, None
        if producer is not None:
            await bounded(self._batches.close(), self._close_timeout, "handing over the last batches")
            await bounded(producer.flush(), self._close_timeout, "flushing the producer")
            await bounded(producer.stop(), self._close_timeout, "closing the producer")

    async def send(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None = None,
        timeout: float | None = None,  # noqa: ASYNC109  a budget for the retries, not one await
        abandon: asyncio.Event | None = None,
    ) -> None:
        """Write one record and wait for Kafka's acknowledgement.

        Retries with backoff; raises `KafkaError` when `timeout` seconds pass, when
        `abandon` is set between tries, or once the outbox is stopped. What Kafka
        refuses for good (too large, not authorised) raises at once, not retriable.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        attempt = 0
        while True:
            producer = self._producer
            if producer is None:
                msg = "producer is stopped"
                raise KafkaError(msg, retriable=True)
            attempt += 1
            try:
                if key is not None and value is not None and BatchWriter.takes(producer, key, value):
                    await self._batches.write(producer, topic, key, value, headers or ())
                else:
                    await producer.send_and_wait(topic, value=value, key=key, headers=list(headers or ()))
            except TOO_LARGE as exc:
                msg = f"publishing to {topic}: Kafka refused the record as too large ({type(exc).__name__})"
                raise TooLargeError(msg) from exc
            except REFUSED_FOR_GOOD as exc:
                raise translate(exc, f"publishing to {topic}") from exc
            except FATAL_PRODUCER_ERRORS as exc:
                _log.warning("producer wedged, restarting it", topic=topic, error=type(exc).__name__)
                await self._restart(producer)
                last: AIOKafkaError = exc
            except AIOKafkaError as exc:
                _log.warning("publish failed, will retry", topic=topic, error=type(exc).__name__)
                last = exc
            else:
                return
            delay = self._retry.delay(attempt)
            now = time.monotonic()
            if deadline is not None and now + delay > deadline:
                raise translate(last, f"publishing to {topic}")
            if (abandon is not None and abandon.is_set()) or self._closed.is_set():
                raise translate(last, f"publishing to {topic}")
            await asyncio.sleep(delay)

    async def _restart(self, broken: AIOKafkaProducer) -> None:
        async with self._restart_lock:
            # Several senders may see the same wedged producer; only the first replaces it.
            if self._producer is not broken or self._closed.is_set():
                return
            fresh = make_producer(self._kafka, client_id=self._client_id)
            try:
                await fresh.start()
            except AIOKafkaError:
                await fresh.stop()
                return
            self._producer = fresh
            try:
                await _stop(broken)
            except AIOKafkaError as exc:
                _log.warning("closing the wedged producer failed", error=type(exc).__name__)


async def _stop(producer: AIOKafkaProducer) -> None:
    # A separate function, as mypy narrows the `is not` test above to "unreachable" on an untyped class.
    await producer.stop()
