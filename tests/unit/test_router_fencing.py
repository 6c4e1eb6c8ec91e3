"""The router's per-partition-number producers after a fence: wait for the group, do not fence back."""

from __future__ import annotations

from typing import Any, cast

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import OutOfOrderSequenceNumber, ProducerFenced

from broker.transactional import FENCED_WAIT, TransactionalProducers
from contracts import KafkaError
from prik.settings import KafkaSettings
from tests.unit.clock import Clock


class FakeTxnManager:
    def is_fatal_error(self) -> bool:
        return False


class FakeProducer:
    def __init__(self, transactional_id: str) -> None:
        self.transactional_id = transactional_id
        self.started = False
        self.stopped = False
        self._txn_manager = FakeTxnManager()

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True


def producers(clock: Clock) -> tuple[TransactionalProducers, list[FakeProducer]]:
    made: list[FakeProducer] = []

    def factory(transactional_id: str) -> AIOKafkaProducer:
        made.append(FakeProducer(transactional_id))
        return cast("AIOKafkaProducer", made[-1])

    return TransactionalProducers(KafkaSettings(), "prik", "test", factory=factory, clock=clock), made


async def test_a_fenced_number_waits_for_the_group_instead_of_taking_its_id_back() -> None:
    clock = Clock()
    owned, made = producers(clock)
    await owned.own({0, 1})
    assert [p.transactional_id for p in made] == ["prik-router-p0", "prik-router-p1"]
    first: Any = await owned.healthy(0)

    await owned.failed(0, ProducerFenced())
    assert first.stopped
    # Initialising prik-router-p0 again now would fence the instance the group gave it to.
    with pytest.raises(KafkaError) as refused:
        await owned.healthy(0)
    assert refused.value.retriable
    assert len(made) == 2
    # Other numbers are untouched.
    assert await owned.healthy(1) is cast("AIOKafkaProducer", made[1])

    # The rebalance hands out ownership again: the number is this instance's once more.
    await owned.own({0})
    again: Any = await owned.healthy(0)
    assert again is made[-1]
    assert again.started
    assert again.transactional_id == "prik-router-p0"
    assert made[1].stopped  # number 1 went to someone else


async def test_without_a_rebalance_the_fence_ends_after_its_wait() -> None:
    # Kafka timed out this instance's own transaction: no rebalance follows, the id is taken back.
    clock = Clock()
    owned, made = producers(clock)
    await owned.own({3})
    await owned.failed(3, ProducerFenced())
    clock.now += FENCED_WAIT - 0.1
    with pytest.raises(KafkaError):
        await owned.healthy(3)
    clock.now += 0.2
    producer: Any = await owned.healthy(3)
    assert producer is made[-1]
    assert producer.started
    assert len(made) == 2


async def test_any_other_failure_gets_a_fresh_producer_at_once() -> None:
    owned, made = producers(Clock())
    await owned.own({2})
    await owned.failed(2, OutOfOrderSequenceNumber())
    assert made[0].stopped
    producer: Any = await owned.healthy(2)
    assert producer is made[1]
    assert producer.started
