"""Publisher without Kafka: keys, headers, order, and the restart after a fatal producer error."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, OutOfOrderSequenceNumber
from aiokafka.structs import RecordMetadata, TopicPartition

from contracts import ConfigError, KafkaError, MessageType, Topics, example_messages, parse, to_bytes
from prik.settings import KafkaSettings
from producers import Publisher, task_status, video_queue_notice

SOR = "123456789012345"
TOPICS = Topics("t-unit")


class FakeProducer:
    """Stands in for AIOKafkaProducer; `fail_with` fails every send's future (or the send itself)."""

    def __init__(self, fail_with: BaseException | None = None, *, fail_in_send: bool = False) -> None:
        self.fail_with = fail_with
        self.fail_in_send = fail_in_send
        self.sent: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = []
        self.started = False
        self.stopped = 0
        self.flushed = 0

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped += 1

    async def flush(self) -> None:
        self.flushed += 1

    async def send(
        self, topic: str, value: bytes, *, key: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[Any]:
        if self.fail_with is not None and self.fail_in_send:
            raise self.fail_with
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.fail_with is not None:
            future.set_exception(self.fail_with)
        else:
            self.sent.append((topic, key, value, headers))
            future.set_result(
                RecordMetadata(topic, 0, TopicPartition(topic, 0), len(self.sent) - 1, -1, 0, 0)
            )
        return future


class Factory:
    def __init__(self, *producers: FakeProducer) -> None:
        self.queue = list(producers)
        self.made: list[FakeProducer] = []

    def __call__(self, kafka: KafkaSettings) -> Any:
        producer = self.queue.pop(0) if self.queue else FakeProducer()
        self.made.append(producer)
        return producer


def _publisher(factory: Factory, tenant: str = "minlaege-video") -> Publisher:
    return Publisher(KafkaSettings(), tenant, TOPICS, producer_factory=factory)


def _notice(tenant: str = "minlaege-video") -> Any:
    return video_queue_notice(tenant, SOR, event="joined", queue_entry_id="q-1")


async def test_publish_sends_structured_cloudevent_keyed_by_recipient() -> None:
    factory = Factory()
    message = _notice()
    async with _publisher(factory) as publisher:
        result = await publisher.publish(message)
    (producer,) = factory.made
    topic, key, value, headers = producer.sent[0]
    assert topic == "t-unit.ingress.minlaege-video" == result.topic
    assert key == SOR.encode()
    assert parse(value) == message
    assert headers == [("content-type", b"application/cloudevents+json")]
    assert result.message_id == message.id
    assert (producer.flushed, producer.stopped) == (1, 1)


async def test_publish_restarts_the_producer_after_a_fatal_error_and_retries() -> None:
    wedged = FakeProducer(OutOfOrderSequenceNumber())
    factory = Factory(wedged)
    message = _notice()
    async with _publisher(factory) as publisher:
        result = await publisher.publish(message)
    assert len(factory.made) == 2
    fresh = factory.made[1]
    assert wedged.stopped == 1
    assert [parse(value) for _, _, value, _ in fresh.sent] == [message]
    assert result.offset == 0


async def test_a_fatal_error_raised_by_send_itself_also_restarts() -> None:
    factory = Factory(FakeProducer(OutOfOrderSequenceNumber(), fail_in_send=True))
    async with _publisher(factory) as publisher:
        results = await publisher.publish_many([_notice(), _notice()])
    assert len(factory.made) == 2
    assert [r.offset for r in results] == [0, 1]


async def test_a_second_fatal_error_is_reported_not_looped() -> None:
    factory = Factory(FakeProducer(OutOfOrderSequenceNumber()), FakeProducer(OutOfOrderSequenceNumber()))
    publisher = _publisher(factory)
    await publisher.start()
    with pytest.raises(KafkaError, match="after restarting the producer"):
        await publisher.publish(_notice())
    assert len(factory.made) == 2
    await publisher.stop()


async def test_ordinary_kafka_errors_are_translated_without_restart() -> None:
    factory = Factory(FakeProducer(KafkaConnectionError()))
    async with _publisher(factory) as publisher:
        with pytest.raises(KafkaError, match=r"publishing to t-unit\.ingress\.minlaege-video"):
            await publisher.publish(_notice())
    assert len(factory.made) == 1


async def test_publish_many_keeps_input_order() -> None:
    factory = Factory()
    messages = [_notice() for _ in range(5)]
    async with _publisher(factory) as publisher:
        results = await publisher.publish_many(messages)
    assert [r.message_id for r in results] == [m.id for m in messages]


async def test_source_must_be_the_publishers_tenant() -> None:
    factory = Factory()
    async with _publisher(factory, tenant="kommune-0101") as publisher:
        with pytest.raises(ConfigError, match="urn:prik:kommune-0101"):
            await publisher.publish(_notice("minlaege-video"))
    assert factory.made[0].sent == []


async def test_publish_raw_sends_the_bytes_unchanged() -> None:
    factory = Factory()
    message = task_status("lps-xmo", "3b0f7c2e-6a51-4d0e-9c1a-0d6f2b7e4a11", "received")
    raw = b"  " + to_bytes(message) + b"\n"
    async with _publisher(factory, tenant="lps-xmo") as publisher:
        await publisher.publish_raw(raw)
    _, key, value, _ = factory.made[0].sent[0]
    assert value == raw
    assert key == b"3b0f7c2e-6a51-4d0e-9c1a-0d6f2b7e4a11"


async def test_stop_twice_is_harmless_and_publish_after_stop_fails() -> None:
    factory = Factory()
    publisher = _publisher(factory)
    await publisher.start()
    await publisher.stop()
    await publisher.stop()
    assert factory.made[0].stopped == 1
    with pytest.raises(KafkaError, match="not started"):
        await publisher.publish(_notice())


def test_example_messages_from_other_sources_are_refused_before_any_io() -> None:
    publisher = _publisher(Factory())
    with pytest.raises(ConfigError):
        publisher._record(
            example_messages()[MessageType.VIDEO_QUEUE].model_copy(update={"source": "urn:prik:x1"})
        )
