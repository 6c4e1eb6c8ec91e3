"""Shutdown while Kafka is unreachable: every close step is bounded, and a second signal ends it at once.

aiokafka's commit, stop and flush retry for ever without a broker; the fakes here
never return from those either.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition

from consumers import CallbackDeliverer, ClinicConsumer
from consumers import outbox as outbox_module
from consumers import runtime as runtime_module
from contracts import Message, Topics, to_bytes
from prik.settings import KafkaSettings
from producers import video_queue_notice

CLINIC = "123456789012"


async def _forever() -> None:
    await asyncio.Event().wait()


class HangingConsumer:
    """Fetches one record, then: commits and stop() never return (the broker is gone)."""

    def __init__(self, topic: str) -> None:
        self.tp = TopicPartition(topic, 0)
        self.listener: Any = None
        self.commits = 0
        self.stop_called = False
        self._served = False

    def subscribe(self, *, topics: list[str], listener: Any) -> None:
        self.listener = listener

    async def start(self) -> None:
        return None

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        if self._served:
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        self._served = True
        await self.listener.on_partitions_assigned({self.tp})
        message = video_queue_notice("minlaege-video", CLINIC, event="joined", queue_entry_id="q-1")
        value = to_bytes(message)
        record = ConsumerRecord(
            topic=self.tp.topic,
            partition=0,
            offset=0,
            timestamp=0,
            timestamp_type=0,
            key=CLINIC.encode(),
            value=value,
            checksum=None,
            serialized_key_size=len(CLINIC),
            serialized_value_size=len(value),
            headers=[],
        )
        return {self.tp: [record]}

    async def commit(self, offsets: Any) -> None:
        self.commits += 1
        await _forever()

    async def stop(self) -> None:
        self.stop_called = True
        await self.listener.on_partitions_revoked({self.tp})  # as aiokafka does when leaving
        await _forever()

    def pause(self, *_tps: TopicPartition) -> None:
        return None

    def resume(self, *_tps: TopicPartition) -> None:
        return None

    def seek(self, _tp: TopicPartition, _offset: int) -> None:
        return None


class HangingProducer:
    """Takes sends, but flush() and stop() never return."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def start(self) -> None:
        return None

    async def send_and_wait(self, topic: str, **_kwargs: Any) -> None:
        self.sent.append(topic)

    async def flush(self) -> None:
        await _forever()

    async def stop(self) -> None:
        await _forever()


@pytest.fixture
def kafka_down(monkeypatch: pytest.MonkeyPatch) -> tuple[list[HangingConsumer], list[HangingProducer]]:
    consumers: list[HangingConsumer] = []
    producers: list[HangingProducer] = []

    def make_consumer(*_args: Any, **_kwargs: Any) -> HangingConsumer:
        consumers.append(HangingConsumer(Topics("t").deliver("lps-test")))
        return consumers[-1]

    def make_producer(*_args: Any, **_kwargs: Any) -> HangingProducer:
        producers.append(HangingProducer())
        return producers[-1]

    monkeypatch.setattr(runtime_module, "make_consumer", make_consumer)
    monkeypatch.setattr(outbox_module, "make_producer", make_producer)
    return consumers, producers


def _consumer(close_timeout: float) -> ClinicConsumer:
    async def accept(_message: Message) -> None:
        return None

    return ClinicConsumer(
        KafkaSettings(),
        Topics("t"),
        "lps-test",
        CallbackDeliverer(accept),
        close_timeout=close_timeout,
        stop_grace=0.2,
        commit_interval=0.05,
    )


async def _until(condition: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_stop_returns_within_its_bounds_while_kafka_hangs(
    kafka_down: tuple[list[HangingConsumer], list[HangingProducer]],
) -> None:
    consumers, producers = kafka_down
    consumer = _consumer(close_timeout=0.3)
    await consumer.start()
    await _until(lambda: consumer.stats.delivered == 1)
    await _until(lambda: consumers[0].commits >= 1)  # the fetch loop's commit hangs too
    began = time.monotonic()
    try:
        await asyncio.wait_for(consumer.stop(), timeout=20)
    except TimeoutError:
        pytest.fail("stop() hung on a Kafka that does not answer")
    took = time.monotonic() - began
    # Loop, final commit, consumer (its revoke commit inside), flush + close: each bounded.
    assert took < 6, took
    assert consumers[0].stop_called
    assert producers[0].sent  # the receipt was written before Kafka went away


async def test_a_second_signal_abandons_the_shutdown_at_once(
    kafka_down: tuple[list[HangingConsumer], list[HangingProducer]],
) -> None:
    consumers, _ = kafka_down
    consumer = _consumer(close_timeout=60)  # a graceful stop would take minutes here
    runner = asyncio.create_task(consumer.run())
    await _until(lambda: consumer.stats.delivered == 1)
    await _until(lambda: consumers[0].commits >= 1)  # the fetch loop's commit, hanging
    os.kill(os.getpid(), signal.SIGTERM)
    await _until(lambda: consumer._stop_task is not None)  # the shutdown has begun
    await asyncio.sleep(0.3)  # and waits on the hanging commit
    assert not runner.done()
    began = time.monotonic()
    os.kill(os.getpid(), signal.SIGTERM)
    try:
        await asyncio.wait_for(runner, timeout=5)
    except TimeoutError:
        pytest.fail("the second signal did not end the shutdown")
    assert time.monotonic() - began < 2
    assert not consumers[0].stop_called  # nothing more was waited for
