"""What fencing costs: three transactional pass-throughs over the same records, no rules.

- `aiokafka, one id`: one transaction per fetched batch under one transactional
  id per instance (prik's engine before fencing; a zombie can commit late);
- `aiokafka, id per partition`: one transaction per input partition number of
  the batch, concurrently (the KIP-98 model prik's engine uses now);
- `librdkafka, KIP-447`: confluent-kafka's consumer and producer, one
  transaction per batch with the consumer's group metadata (fenced by generation).

Each reads the same pre-published records from its own group and writes them
to its own topic; the rate is the records over the time from the first commit
to the last, so group joins are left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic

from contracts import PrikError
from deploy.topics import delete_topics_under
from prik.kafka import (
    admin_client,
    confluent_group_consumer,
    confluent_transactional_producer,
    kafka_errors,
    make_consumer,
    make_producer,
)
from prik.settings import KafkaSettings

__all__ = ["FencingResult", "bench_fencing"]

_PARTITIONS = 6
_MAX_BATCH = 500


@dataclass(frozen=True, slots=True)
class FencingResult:
    model: str
    per_second: float


class _Clock:
    """Records committed so far, and when the first and the last commit were."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.first: float | None = None
        self.last = 0.0

    def committed(self, records: int) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
            self.total -= records  # the first commit starts the clock
        else:
            self.done += records
        self.last = now

    @property
    def finished(self) -> bool:
        return self.first is not None and self.done >= self.total

    def rate(self) -> float:
        return self.done / max(self.last - (self.first or self.last), 1e-6)


async def _aiokafka(
    kafka: KafkaSettings, source: str, sink: str, total: int, *, per_partition: bool
) -> float:
    group = f"{sink}-group"
    consumer = make_consumer(kafka, source, group_id=group, client_id="prik-bench")
    producers: dict[int, AIOKafkaProducer] = {}

    async def producer_for(key: int) -> AIOKafkaProducer:
        if key not in producers:
            producers[key] = make_producer(kafka, transactional_id=f"{group}-{key}", client_id="prik-bench")
            await producers[key].start()
        return producers[key]

    async def transact(key: int, share: dict[TopicPartition, list[object]]) -> int:
        producer = await producer_for(key)
        async with producer.transaction():
            sends = [
                await producer.send(sink, r.value, key=r.key, headers=list(r.headers))  # type: ignore[attr-defined]  # ConsumerRecord
                for records in share.values()
                for r in records
            ]
            await asyncio.gather(*sends)
            offsets = {tp: records[-1].offset + 1 for tp, records in share.items()}  # type: ignore[attr-defined]
            await producer.send_offsets_to_transaction(offsets, group)
        return sum(len(records) for records in share.values())

    clock = _Clock(total)
    with kafka_errors("benchmarking the aiokafka pass-through"):
        await consumer.start()
        try:
            while not clock.finished:
                batch = await consumer.getmany(timeout_ms=200, max_records=_MAX_BATCH)
                shares: dict[int, dict[TopicPartition, list[object]]] = {}
                for tp, records in batch.items():
                    shares.setdefault(tp.partition if per_partition else 0, {})[tp] = records
                counts = await asyncio.gather(*(transact(k, share) for k, share in shares.items()))
                if counts:
                    clock.committed(sum(counts))
        finally:
            await consumer.stop()
            for producer in producers.values():
                await producer.stop()
    return clock.rate()


def _librdkafka(kafka: KafkaSettings, source: str, sink: str, total: int) -> float:
    group = f"{sink}-group"
    consumer = confluent_group_consumer(kafka, group, client_id="prik-bench")
    producer = confluent_transactional_producer(kafka, group, client_id="prik-bench")
    clock = _Clock(total)
    try:
        producer.init_transactions(30)
        consumer.subscribe([source])
        while not clock.finished:
            records = [m for m in consumer.consume(_MAX_BATCH, 0.2) if m.error() is None]
            if not records:
                continue
            producer.begin_transaction()
            for m in records:
                producer.produce(sink, m.value(), m.key(), headers=m.headers())
            producer.send_offsets_to_transaction(
                consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30
            )
            producer.commit_transaction(30)
            clock.committed(len(records))
    finally:
        consumer.close()
        producer.flush(10)
    return clock.rate()


async def bench_fencing(
    kafka: KafkaSettings, messages: int, progress: Callable[[str], None]
) -> list[FencingResult]:
    prefix = f"bench-fencing-{secrets.token_hex(3)}"
    source = f"{prefix}.in"
    async with admin_client(kafka) as admin:
        await admin.create_topics(
            [NewTopic(name, _PARTITIONS, 1) for name in (source, *(f"{prefix}.out{n}" for n in range(3)))]
        )
    try:
        return await _measure(kafka, prefix, source, messages, progress)
    finally:
        with contextlib.suppress(PrikError):
            await delete_topics_under(kafka, prefix)


async def _measure(
    kafka: KafkaSettings, prefix: str, source: str, messages: int, progress: Callable[[str], None]
) -> list[FencingResult]:
    progress(f"fencing: publishing {messages} records of 600 bytes")
    producer = make_producer(kafka, client_id="prik-bench")
    with kafka_errors("publishing the fencing benchmark's records"):
        await producer.start()
        try:
            value = b"x" * 600
            for start in range(0, messages, 1000):
                sends = [
                    await producer.send(source, value, key=f"k{i % 200}".encode())
                    for i in range(start, min(messages, start + 1000))
                ]
                await asyncio.gather(*sends)
        finally:
            await producer.stop()

    async def one_id(sink: str) -> float:
        return await _aiokafka(kafka, source, sink, messages, per_partition=False)

    async def id_per_partition(sink: str) -> float:
        return await _aiokafka(kafka, source, sink, messages, per_partition=True)

    async def kip_447(sink: str) -> float:
        return await asyncio.to_thread(_librdkafka, kafka, source, sink, messages)

    models: dict[str, Callable[[str], Awaitable[float]]] = {
        "aiokafka, one id": one_id,
        "aiokafka, id per partition": id_per_partition,
        "librdkafka, KIP-447": kip_447,
    }
    results = []
    for number, (model, run) in enumerate(models.items()):
        progress(f"fencing: {model}")
        results.append(FencingResult(model, await run(f"{prefix}.out{number}")))
    return results
