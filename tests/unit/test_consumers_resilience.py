"""A wedged producer is replaced, and health means progress, not merely a running process."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, OutOfOrderSequenceNumber
from aiokafka.structs import TopicPartition

from consumers import Backoff
from consumers import outbox as outbox_module
from consumers.lanes import Lane, PartitionWork, assess_health
from consumers.outbox import Outbox
from contracts import KafkaError
from prik.settings import KafkaSettings


class FakeProducer:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.sent: list[tuple[str, bytes]] = []
        self.stopped = False

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.stopped = True

    async def flush(self) -> None:
        return None

    async def send_and_wait(self, topic: str, *, value: bytes, key: Any, headers: Any) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((topic, value))


@pytest.fixture
def producers(monkeypatch: pytest.MonkeyPatch) -> list[FakeProducer]:
    made: list[FakeProducer] = []
    plan = [[OutOfOrderSequenceNumber()], [], []]

    def factory(*_args: Any, **_kwargs: Any) -> FakeProducer:
        made.append(FakeProducer(plan[len(made)]))
        return made[-1]

    monkeypatch.setattr(outbox_module, "make_producer", factory)
    return made


async def test_wedged_producer_is_restarted_and_the_send_goes_through(producers: list[FakeProducer]) -> None:
    outbox = Outbox(KafkaSettings(), client_id="t", retry=Backoff(base=0.01, cap=0.01))
    await outbox.start()
    await outbox.send("topic", key=b"k", value=b"v")
    await outbox.stop()
    first, second = producers
    assert first.stopped
    assert first.sent == []
    assert second.sent == [("topic", b"v")]


async def test_send_gives_up_when_abandoned(producers: list[FakeProducer]) -> None:
    outbox = Outbox(KafkaSettings(), client_id="t", retry=Backoff(base=0.01, cap=0.01))
    await outbox.start()
    producers[0].failures = [KafkaTimeoutError()] * 100
    abandon = asyncio.Event()
    abandon.set()
    with pytest.raises(KafkaError):
        await outbox.send("topic", key=None, value=b"v", abandon=abandon)
    with pytest.raises(KafkaError):
        await outbox.send("topic", key=None, value=b"v", timeout=0.05)
    await outbox.stop()
    await outbox.stop()  # twice is fine


def _part(*phases: tuple[str, float | None]) -> PartitionWork:
    part = PartitionWork(TopicPartition("t", 0))
    for n, (name, due) in enumerate(phases):
        lane = Lane(f"clinic-{n}")
        lane.phase.name, lane.phase.due = name, due
        part.lanes[lane.clinic] = lane
        part.tracker.add(n)
    return part


def test_idle_and_running_is_healthy() -> None:
    report = assess_health(
        running=True,
        fetched_ago=0.1,
        parts=[PartitionWork(TopicPartition("t", 0))],
        stall_after=60,
        progress=None,
    )
    assert report.healthy
    assert report.reason == "idle"


def test_not_running_or_not_fetching_is_unhealthy() -> None:
    assert not assess_health(running=False, fetched_ago=0, parts=[], stall_after=60, progress=None).healthy
    stalled = assess_health(running=True, fetched_ago=61, parts=[], stall_after=60, progress=None)
    assert not stalled.healthy
    assert "no fetch" in stalled.reason


def test_a_long_retry_wait_is_not_a_stall_but_an_overdue_step_is() -> None:
    now = time.monotonic()
    waiting = _part(("wait", now + 3000))
    fake_task: Any = object()
    waiting.lanes["clinic-0"].task = fake_task
    assert assess_health(running=True, fetched_ago=0, parts=[waiting], stall_after=60, progress=None).healthy
    stuck = _part(("deliver", now - 120))
    stuck.lanes["clinic-0"].task = fake_task
    report = assess_health(running=True, fetched_ago=0, parts=[stuck], stall_after=60, progress=None)
    assert not report.healthy
    assert "clinic-0" in report.reason
    assert report.pending == 1
