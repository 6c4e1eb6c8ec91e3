"""The sender SDK: publish prik messages onto a tenant's ingress topic, acknowledged by Kafka."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.errors import ProducerClosed
from aiokafka.structs import RecordMetadata, TopicPartition

from contracts import (
    STRUCTURED_CONTENT_TYPE,
    ConfigError,
    KafkaError,
    Message,
    Topics,
    parse,
    source_of,
    to_bytes,
)
from contracts.headers import CONTENT_TYPE
from prik.kafka import FATAL_PRODUCER_ERRORS, kafka_errors, make_producer, translate
from prik.partitioning import KeyPartitioner
from prik.settings import KafkaSettings

from .keys import key_of

__all__ = ["ProducerFactory", "PublishResult", "Publisher"]

ProducerFactory = Callable[[KafkaSettings], AIOKafkaProducer]
"""Builds the underlying aiokafka producer; tests swap in a fake."""

_HEADERS = [(CONTENT_TYPE, STRUCTURED_CONTENT_TYPE.encode())]
# `publish_many` builds record batches itself for records up to this size (larger ones
# go through aiokafka's `send`, which refuses what exceeds the producer's request size).
_BATCHED_MAX_BYTES = 64 * 1024
_PARTITIONER = KeyPartitioner()


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Where Kafka stored one published message."""

    topic: str
    partition: int
    offset: int
    message_id: str

    def __str__(self) -> str:
        return f"{self.message_id} {self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True)
class _Record:
    key: bytes
    value: bytes
    message_id: str


def _default_factory(kafka: KafkaSettings) -> AIOKafkaProducer:
    return make_producer(kafka, client_id="prik-publisher")


class Publisher:
    """Publishes one tenant's messages onto its ingress topic.

    Idempotent with acks=all: `publish` returns once every in-sync replica has
    the message. After a fatal producer error (aiokafka #1017: a wedged
    idempotent producer) the producer is replaced once and the unacknowledged
    messages are sent again; the message id stays the same, so the router's
    dedup drops a copy that did land the first time.

        async with Publisher(settings.kafka, "minlaege-video", settings.topics) as pub:
            result = await pub.publish(video_queue_notice(...))
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        tenant: str,
        topics: Topics,
        *,
        producer_factory: ProducerFactory = _default_factory,
    ) -> None:
        self._kafka = kafka
        self._tenant = tenant
        self._source = source_of(tenant)
        self._topic = topics.ingress(tenant)
        self._factory = producer_factory
        self._producer: AIOKafkaProducer | None = None
        # Concurrent publishes that all saw the same fatal error must restart it only once.
        self._generation = 0
        self._restart_lock = asyncio.Lock()
        # One batch at a time per partition queues in aiokafka (see `_queue`).
        self._queueing: dict[int, asyncio.Lock] = {}

    @property
    def topic(self) -> str:
        return self._topic

    @property
    def tenant(self) -> str:
        return self._tenant

    async def start(self) -> None:
        if self._producer is not None:
            return
        producer = self._factory(self._kafka)
        try:
            with kafka_errors(f"connecting to Kafka at {self._kafka.bootstrap}"):
                await producer.start()
        except BaseException:
            # A failed start still holds a client and its connections: close what was opened.
            await producer.stop()
            raise
        self._producer = producer

    async def stop(self) -> None:
        """Flush what is pending, then close; a second call does nothing."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            with kafka_errors("flushing the producer"):
                await producer.flush()
        finally:
            await producer.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _record(self, message: Message, value: bytes | None = None) -> _Record:
        if message.source != self._source:
            # The router would refuse it anyway; saying so here names the real mistake.
            msg = f"message source {message.source} is not {self._source} of tenant {self._tenant}"
            raise ConfigError(msg)
        body = to_bytes(message) if value is None else value
        return _Record(key=key_of(message).encode(), value=body, message_id=message.id)

    async def publish(self, message: Message) -> PublishResult:
        """Publish one message; returns once Kafka has acknowledged it."""
        (result,) = await self._send([self._record(message)])
        return result

    async def publish_raw(self, value: bytes) -> PublishResult:
        """Publish structured-mode CloudEvents bytes exactly as given, after checking them with `parse`."""
        (result,) = await self._send([self._record(parse(value), value)])
        return result

    async def publish_many(self, messages: Sequence[Message]) -> list[PublishResult]:
        """Send all, then wait for all: Kafka batches them. Results are in input order."""
        return await self._send([self._record(m) for m in messages])

    async def _send(self, records: Sequence[_Record]) -> list[PublishResult]:
        results: list[PublishResult | None] = [None] * len(records)
        for attempt in (1, 2):
            producer, generation = await self._current()
            pending = [i for i, r in enumerate(results) if r is None]
            outcomes = await self._send_once(producer, [records[i] for i in pending])
            fatal: AIOKafkaError | None = None
            for index, outcome in zip(pending, outcomes, strict=True):
                if isinstance(outcome, FATAL_PRODUCER_ERRORS):
                    fatal = outcome
                elif isinstance(outcome, AIOKafkaError):
                    raise translate(outcome, f"publishing to {self._topic}") from outcome
                elif isinstance(outcome, BaseException):
                    raise outcome
                else:
                    results[index] = PublishResult(
                        topic=outcome.topic,
                        partition=outcome.partition,
                        offset=outcome.offset,
                        message_id=records[index].message_id,
                    )
            if fatal is None:
                break
            if attempt == 2:
                raise translate(
                    fatal, f"publishing to {self._topic} (after restarting the producer)"
                ) from fatal
            await self._restart(generation)
        return [r for r in results if r is not None]

    async def _send_once(self, producer: AIOKafkaProducer, records: Sequence[_Record]) -> list[Any]:
        """Per record its RecordMetadata, or the exception that failed it."""
        if (
            len(records) > 1
            and isinstance(producer, AIOKafkaProducer)
            and all(len(r.key) + len(r.value) <= _BATCHED_MAX_BYTES for r in records)
        ):
            return await self._send_batched(producer, records)
        futures: list[asyncio.Future[Any]] = []
        try:
            for record in records:
                headers = list(_HEADERS)
                future = await producer.send(self._topic, record.value, key=record.key, headers=headers)
                futures.append(future)
        except FATAL_PRODUCER_ERRORS as exc:
            # Not queued: everything from here on counts as failed by the same error.
            queued: list[Any] = list(await asyncio.gather(*futures, return_exceptions=True))
            return queued + [exc] * (len(records) - len(futures))
        except AIOKafkaError as exc:
            raise translate(exc, f"publishing to {self._topic}") from exc
        return list(await asyncio.gather(*futures, return_exceptions=True))

    async def _send_batched(self, producer: AIOKafkaProducer, records: Sequence[_Record]) -> list[Any]:
        """`_send_once` through record batches built here, one acknowledgement per batch.

        aiokafka's `send` costs ~15 µs of Python per record (metadata check, partitioner,
        accumulator, a future); a batch appends a record in its C builder. The records
        go to the partition aiokafka's default partitioner would pick (`KeyPartitioner`),
        in input order per partition; the idempotent producer numbers the batches as
        any other, so acks=all, idempotence and per-key order hold. py-spy under
        `prik bench publisher`: `AIOKafkaProducer.send` was 50% of `publish_many`.
        """
        topic = self._topic
        with kafka_errors(f"publishing to {topic}"):
            partitions = sorted(await producer.partitions_for(topic))
        by_partition: dict[int, list[int]] = {}
        for index, record in enumerate(records):
            partition = _PARTITIONER(record.key, partitions, partitions)
            by_partition.setdefault(partition, []).append(index)
        queued: list[tuple[asyncio.Future[Any], int, list[int]]] = []
        try:
            for partition, indices in by_partition.items():
                batch, members = producer.create_batch(), list[int]()
                for index in indices:
                    record = records[index]
                    if (
                        batch.append(key=record.key, value=record.value, timestamp=None, headers=_HEADERS)
                        is None
                    ):
                        # Full: off it goes, and the record starts the next one (a first record always fits).
                        batch.close()
                        queued.append((await self._queue(producer, batch, partition), partition, members))
                        batch, members = producer.create_batch(), []
                        batch.append(key=record.key, value=record.value, timestamp=None, headers=_HEADERS)
                    members.append(index)
                batch.close()
                queued.append((await self._queue(producer, batch, partition), partition, members))
        except FATAL_PRODUCER_ERRORS as exc:
            # What was not queued counts as failed by the same error.
            outcomes: list[Any] = [exc] * len(records)
            await self._settle(queued, outcomes)
            return outcomes
        except AIOKafkaError as exc:
            _abandon(queued)
            raise translate(exc, f"publishing to {topic}") from exc
        except BaseException:
            _abandon(queued)  # cancelled mid-way
            raise
        outcomes = [None] * len(records)
        await self._settle(queued, outcomes)
        return outcomes

    async def _queue(self, producer: AIOKafkaProducer, batch: Any, partition: int) -> asyncio.Future[Any]:  # noqa: ANN401 - aiokafka's BatchBuilder has no types
        """`send_batch`, one caller per partition at a time, in the order they came.

        aiokafka's `add_batch` waits for the partition's queued batch to be taken, and
        counts each wait against its timeout from the first one (0.14: `timeout -=
        now - start` with a fixed start): with many callers waking and re-queueing,
        most of 400 concurrent two-message calls failed with KafkaTimeoutError. Behind
        this lock each caller waits for at most the batch before its own.
        """
        lock = self._queueing.get(partition)
        if lock is None:
            lock = self._queueing[partition] = asyncio.Lock()
        async with lock:
            future: asyncio.Future[Any] = await producer.send_batch(batch, self._topic, partition=partition)
        if producer._closed:  # noqa: SLF001  aiokafka has no public "stopped" test
            # Stopped while add_batch waited (a restart, a stop): it queues into the closed
            # accumulator all the same, where nothing sends or fails the batch any more.
            future.add_done_callback(_observe)
            raise ProducerClosed
        return future

    async def _settle(
        self, queued: Sequence[tuple[asyncio.Future[Any], int, list[int]]], outcomes: list[Any]
    ) -> None:
        """Each queued batch's outcome onto its records: record i of a batch is at the batch's offset + i."""
        acks = await asyncio.gather(*(future for future, _, _ in queued), return_exceptions=True)
        for ack, (_, partition, members) in zip(acks, queued, strict=True):
            for position, index in enumerate(members):
                if isinstance(ack, BaseException):
                    outcomes[index] = ack
                else:
                    tp = TopicPartition(self._topic, partition)
                    outcomes[index] = RecordMetadata(
                        self._topic, partition, tp, ack.offset + position, ack.timestamp, -1, None
                    )

    async def _current(self) -> tuple[AIOKafkaProducer, int]:
        # A restart in progress holds the lock; wait for its new producer rather than fail.
        async with self._restart_lock:
            if self._producer is None:
                msg = "the publisher is not started (use `async with Publisher(...)` or `await start()`)"
                raise KafkaError(msg)
            return self._producer, self._generation

    async def _restart(self, failed_generation: int) -> None:
        async with self._restart_lock:
            if self._generation != failed_generation:
                return
            old, self._producer = self._producer, None
            if old is not None:
                # A wedged producer cannot flush; closing it must not hide the restart.
                with contextlib.suppress(Exception):
                    await old.stop()
            self._generation += 1
            await self.start()


def _abandon(queued: Sequence[tuple[asyncio.Future[Any], int, list[int]]]) -> None:
    """Batches already queued still go; their outcome, nobody waits for, is not printed as unretrieved."""
    for future, _, _ in queued:
        future.add_done_callback(_observe)


def _observe(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
