"""The outbox's writes gathered into record batches: one acknowledgement per batch, not per record.

Every clinic's lane writes one receipt per message and waits for Kafka's
acknowledgement. Through aiokafka's `send` each record costs ~15 µs of Python
(metadata check, partitioner, accumulator, a future): py-spy under `prik bench
consumer` put `AIOKafkaProducer.send` at a fifth of the lanes' CPU. Writes made
in the same turn of the event loop are instead appended to batches built here
(`create_batch` / `send_batch`) by one flusher task, in the order they were
made; each writer still waits for its own record's acknowledgement, with the
error Kafka gave its batch. Keyed records go to the partition aiokafka's
default partitioner would pick; the idempotent producer numbers the batches
like any other, so acks=all and idempotence hold.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import ProducerClosed

from prik.partitioning import KeyPartitioner

__all__ = ["BATCHED_MAX_BYTES", "BatchWriter"]

# Larger records (a dead letter keeps the original) go through aiokafka's `send`,
# which refuses what exceeds the producer's request size with its own error.
BATCHED_MAX_BYTES = 64 * 1024


@dataclass(slots=True)
class _Write:
    producer: AIOKafkaProducer
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    done: asyncio.Future[None]


class BatchWriter:
    """Gathers keyed writes into record batches; `write` returns once Kafka acknowledged the record."""

    def __init__(self) -> None:
        self._pending: list[_Write] = []
        self._flusher: asyncio.Task[None] | None = None
        self._partitioner = KeyPartitioner()

    @staticmethod
    def takes(producer: object, key: bytes | None, value: bytes | None) -> bool:
        """Whether a record goes through batches here (else through the producer's `send`)."""
        return (
            isinstance(producer, AIOKafkaProducer)
            and key is not None
            and value is not None
            and len(key) + len(value) <= BATCHED_MAX_BYTES
        )

    async def write(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        key: bytes,
        value: bytes,
        headers: Sequence[tuple[str, bytes]],
    ) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Write(producer, topic, key, value, list(headers), done))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_all(), name="prik-outbox-batches")
        await done

    async def close(self) -> None:
        """Wait for the flusher to hand over what it holds (the caller bounds the wait)."""
        flusher = self._flusher
        if flusher is not None:
            await asyncio.shield(flusher)

    async def _flush_all(self) -> None:
        writes: list[_Write] = []
        try:
            while self._pending:
                writes, self._pending = self._pending, []
                try:
                    await self._flush(writes)
                except Exception as exc:  # noqa: BLE001  a record a batch refuses: its writers get the error
                    # Not just the one record: its writers would otherwise wait for ever.
                    for write in writes:
                        _fail(write.done, exc)
        except BaseException:
            for write in writes:
                _fail(write.done, ProducerClosed())
            raise
        finally:
            self._flusher = None
            # Cancelled (the loop is closing): nobody waits for ever on what was left.
            for write in self._pending:
                _fail(write.done, ProducerClosed())

    async def _flush(self, writes: list[_Write]) -> None:
        groups: dict[tuple[int, str], list[_Write]] = {}
        for write in writes:
            groups.setdefault((id(write.producer), write.topic), []).append(write)
        for group in groups.values():
            first = group[0]
            try:
                partitions = sorted(await first.producer.partitions_for(first.topic))
            except Exception as exc:  # noqa: BLE001  each writer gets the error, as send would have raised it
                for write in group:
                    _fail(write.done, exc)
                continue
            by_partition: dict[int, list[_Write]] = {}
            for write in group:
                partition = self._partitioner(write.key, partitions, partitions)
                by_partition.setdefault(partition, []).append(write)
            for partition, members in by_partition.items():
                await self._send(first.producer, first.topic, partition, members)

    @staticmethod
    async def _send(producer: AIOKafkaProducer, topic: str, partition: int, writes: list[_Write]) -> None:
        batch, members = producer.create_batch(), list[_Write]()
        for write in writes:
            if batch.append(key=write.key, value=write.value, timestamp=None, headers=write.headers) is None:
                # Full: off it goes, and this record starts the next one (a first record always fits).
                await _submit(producer, batch, topic, partition, members)
                batch, members = producer.create_batch(), []
                batch.append(key=write.key, value=write.value, timestamp=None, headers=write.headers)
            members.append(write)
        await _submit(producer, batch, topic, partition, members)


async def _submit(
    producer: AIOKafkaProducer,
    batch: Any,  # noqa: ANN401 - aiokafka's BatchBuilder has no types
    topic: str,
    partition: int,
    members: list[_Write],
) -> None:
    batch.close()
    try:
        acknowledged: asyncio.Future[Any] = await producer.send_batch(batch, topic, partition=partition)
    except Exception as exc:  # noqa: BLE001  not queued: each writer gets the error send would have raised
        for write in members:
            _fail(write.done, exc)
        return
    if producer._closed:  # noqa: SLF001  aiokafka has no public "stopped" test
        # Stopped while add_batch waited (the outbox's restart or stop): it queues into the
        # closed accumulator all the same, where nothing sends or fails the batch any more.
        acknowledged.add_done_callback(_observe)
        for write in members:
            _fail(write.done, ProducerClosed())
        return

    def settle(ack: asyncio.Future[Any]) -> None:
        # Abandoned (the producer was closed first): a retriable error, so the record stays unfinished.
        error = ProducerClosed() if ack.cancelled() else ack.exception()
        for write in members:
            if error is not None:
                _fail(write.done, error)
            elif not write.done.done():
                write.done.set_result(None)

    acknowledged.add_done_callback(settle)


def _fail(done: asyncio.Future[None], error: BaseException) -> None:
    if not done.done():
        done.set_exception(error)


def _observe(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
