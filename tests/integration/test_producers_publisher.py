"""Publisher against a real broker: every message type lands keyed per DESIGN.md and parses back equal."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from contracts import KafkaError, Message, Topics, parse
from deploy.topics import apply_topics
from prik.kafka import make_consumer
from prik.settings import KafkaSettings
from prik.tenants import load_tenants
from producers import (
    Publisher,
    PublishResult,
    read_records,
    receipt,
    referral_status_notice,
    task_request,
    task_status,
    video_queue_notice,
)

pytestmark = pytest.mark.kafka

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "tenants.example.toml"
SOR = "123456789012345"
CPR = "0101901234"


async def _read_back(kafka: KafkaSettings, result: PublishResult) -> ConsumerRecord[bytes, bytes]:
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    try:
        tp = TopicPartition(result.topic, result.partition)
        consumer.assign([tp])
        consumer.seek(tp, result.offset)
        return await consumer.getone()
    finally:
        await consumer.stop()


async def test_every_message_type_is_published_keyed_and_parses_back_equal(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    kafka = KafkaSettings(bootstrap=kafka_bootstrap)
    topics = Topics(topic_prefix)
    await apply_topics(kafka, topics, load_tenants(EXAMPLE))

    video = video_queue_notice(
        "minlaege-video", SOR, event="joined", queue_entry_id="q-1", position=1, cpr=CPR
    )
    referral = referral_status_notice(
        "kommune-0101",
        SOR,
        referral_id="ref-1",
        municipality_code="101",
        offer="TeleKOL",
        status="accepted",
        cpr=CPR,
    )
    request = task_request("kommune-0101", SOR, code="medication-review", cpr=CPR)
    status = task_status("lps-xmo", request.data.task_id, "received")
    answer = receipt(
        "lps-xmo",
        message_id=video.id,
        message_source=video.source,
        message_type=video.type,
        outcome="delivered",
        recipient=SOR,
    )
    expected_keys: list[tuple[Message, str]] = [
        (video, SOR),
        (referral, SOR),
        (request, SOR),
        (status, str(request.data.task_id)),
        (answer, video.id),
    ]

    results: list[PublishResult] = []
    async with Publisher(kafka, "minlaege-video", topics) as pub:
        results.append(await pub.publish(video))
    async with Publisher(kafka, "kommune-0101", topics) as pub:
        results += await pub.publish_many([referral, request])
    async with Publisher(kafka, "lps-xmo", topics) as pub:
        results += [await pub.publish(status), await pub.publish(answer)]

    for (message, key), result in zip(expected_keys, results, strict=True):
        assert result.message_id == message.id
        assert result.topic == topics.ingress(message.source.removeprefix("urn:prik:"))
        record = await _read_back(kafka, result)
        assert record.key == key.encode()
        assert dict(record.headers)["content-type"] == b"application/cloudevents+json"
        assert parse(record.value, record.headers) == message
        assert CPR.encode() not in record.key


async def test_same_clinic_lands_on_one_partition_in_order(kafka_bootstrap: str, topic_prefix: str) -> None:
    kafka = KafkaSettings(bootstrap=kafka_bootstrap)
    topics = Topics(topic_prefix)
    await apply_topics(kafka, topics, load_tenants(EXAMPLE))
    events = ["joined", "called", "left"] * 10
    notices = [video_queue_notice("minlaege-video", SOR, event=e, queue_entry_id="q-7") for e in events]
    async with Publisher(kafka, "minlaege-video", topics) as pub:
        results = await pub.publish_many(notices)
    assert len({r.partition for r in results}) == 1
    assert [r.offset for r in results] == sorted(r.offset for r in results)

    read = [parse(r.value) async for r in read_records(kafka, topics.ingress("minlaege-video"))]
    assert [m.id for m in read] == [n.id for n in notices]


async def test_reading_a_missing_topic_fails_with_a_clear_error(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    kafka = KafkaSettings(bootstrap=kafka_bootstrap)
    with pytest.raises(KafkaError, match="does not exist"):
        [r async for r in read_records(kafka, Topics(topic_prefix).replies("nobody"))]
