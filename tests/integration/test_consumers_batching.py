"""The outbox's batched writes on a real broker: every record once, where aiokafka would put it, in order."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.partitioner import DefaultPartitioner

from consumers.outbox import Outbox
from contracts import Topics
from deploy.topics import apply_topics
from prik.settings import KafkaSettings
from prik.tenants import load_tenants
from producers import partitions_of, read_records

from .test_producers_publisher import EXAMPLE

pytestmark = pytest.mark.kafka


async def test_concurrent_writes_each_land_once_keyed_and_in_order(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    kafka = KafkaSettings(bootstrap=kafka_bootstrap)
    topics = Topics(topic_prefix)
    await apply_topics(kafka, topics, load_tenants(EXAMPLE))
    topic = topics.ingress("lps-xmo")
    outbox = Outbox(kafka, client_id="t-batching")
    await outbox.start()

    async def lane(clinic: int) -> None:
        # One writer per key, one record after the other, as a clinic's lane writes.
        for n in range(20):
            headers = [("content-type", b"application/json"), ("n", str(n).encode())]
            await outbox.send(
                topic, key=f"key-{clinic}".encode(), value=f"{clinic}:{n}".encode(), headers=headers
            )

    try:
        await asyncio.gather(*(lane(clinic) for clinic in range(50)))
        # A record too big for a batch of its own goes through aiokafka's send.
        await outbox.send(topic, key=b"big", value=b"x" * 100_000)
    finally:
        await outbox.stop()

    partitions = [tp.partition for tp in await partitions_of(kafka, topic)]
    default = DefaultPartitioner()
    seen: dict[bytes, list[str]] = {}
    async for record in read_records(kafka, topic):
        assert record.key is not None
        assert record.partition == default(record.key, partitions, partitions)
        seen.setdefault(record.key, []).append((record.value or b"").decode()[:20])
    assert seen.pop(b"big") == ["x" * 20]
    assert seen == {f"key-{c}".encode(): [f"{c}:{n}" for n in range(20)] for c in range(50)}
