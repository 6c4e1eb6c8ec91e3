"""Publisher.publish_many's own record batches on a real broker: partitions, offsets, order, restart."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import OutOfOrderSequenceNumber
from aiokafka.partitioner import DefaultPartitioner

from contracts import Topics, parse
from deploy.topics import apply_topics
from prik.kafka import make_producer
from prik.settings import KafkaSettings
from prik.tenants import load_tenants
from producers import Publisher, partitions_of, read_records, video_queue_notice

from .test_producers_publisher import EXAMPLE

pytestmark = pytest.mark.kafka

CLINICS = [f"{300000000000 + i}" for i in range(40)]


def _notices(count: int) -> list[Any]:
    return [
        video_queue_notice(
            "minlaege-video",
            CLINICS[i % len(CLINICS)],
            event="joined",
            queue_entry_id=f"q-{i}",
            # Long enough that each partition's share needs several 256 KiB batches.
            consultation_url=f"https://video.example.dk/room/{i}?" + "x" * 300,
        )
        for i in range(count)
    ]


async def test_batches_land_where_results_say_in_order_per_clinic(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    kafka = KafkaSettings(bootstrap=kafka_bootstrap)
    topics = Topics(topic_prefix)
    await apply_topics(kafka, topics, load_tenants(EXAMPLE))
    notices = _notices(4000)
    async with Publisher(kafka, "minlaege-video", topics) as pub:
        results = await pub.publish_many(notices)
    assert [r.message_id for r in results] == [n.id for n in notices]

    topic = topics.ingress("minlaege-video")
    partitions = [tp.partition for tp in await partitions_of(kafka, topic)]
    stored = {(r.partition, r.offset): r async for r in read_records(kafka, topic)}
    assert len(stored) == len(notices)
    default = DefaultPartitioner()
    for notice, result in zip(notices, results, strict=True):
        record = stored[(result.partition, result.offset)]
        assert parse(record.value, record.headers).id == notice.id
        assert record.key == notice.recipient.encode()
        assert dict(record.headers)["content-type"] == b"application/cloudevents+json"
        # Where aiokafka's own send would have put it.
        assert result.partition == default(record.key, partitions, partitions)
    for clinic in CLINICS:
        sent = [n.id for n in notices if n.recipient == clinic]
        offsets = sorted(
            (r.partition, r.offset) for n, r in zip(notices, results, strict=True) if n.recipient == clinic
        )
        assert [parse(stored[at].value).id for at in offsets] == sent


class _WedgesOnce(AIOKafkaProducer):  # type: ignore[misc]  # aiokafka ships no types
    """A real producer whose first batch fails as aiokafka #1017's wedged idempotent producer does."""

    wedged = False

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any:
        if not _WedgesOnce.wedged:
            _WedgesOnce.wedged = True
            raise OutOfOrderSequenceNumber
        return await super().send_batch(batch, topic, partition=partition)


async def test_a_fatal_error_on_a_batch_restarts_the_producer_and_loses_nothing(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    kafka = KafkaSettings(bootstrap=kafka_bootstrap)
    topics = Topics(topic_prefix)
    await apply_topics(kafka, topics, load_tenants(EXAMPLE))
    made: list[AIOKafkaProducer] = []

    def factory(settings: KafkaSettings) -> AIOKafkaProducer:
        producer = make_producer(settings)
        if not made:
            producer.__class__ = _WedgesOnce
        made.append(producer)
        return producer

    notices = _notices(300)
    async with Publisher(kafka, "minlaege-video", topics, producer_factory=factory) as pub:
        results = await pub.publish_many(notices)
    assert len(made) == 2
    assert [r.message_id for r in results] == [n.id for n in notices]
    read = [parse(r.value).id async for r in read_records(kafka, topics.ingress("minlaege-video"))]
    assert sorted(read) == sorted(n.id for n in notices)
