"""The pipelined engine's bookkeeping, with fakes for the consumer and the transactions.

Each test drives `TransactionalEngine` turn by turn (or its run loop) against a
scripted consumer; what a transaction does is replaced, so what is checked is
only what the engine does around it: where it reads again after a failed
commit, and how it stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError, KafkaConnectionError

from broker.engine import TransactionalEngine, _InFlight, _Listener
from broker.router import NOTHING_STAGED, Batch
from prik.settings import KafkaSettings

TP = TopicPartition("prik.ingress.minlaege-video", 0)


@dataclass(frozen=True)
class Record:
    offset: int


@dataclass
class FakeConsumer:
    """Hands out scripted fetches; remembers every seek."""

    fetches: list[dict[TopicPartition, list[Record]]]
    committed_offsets: dict[TopicPartition, int | None] = field(default_factory=dict)
    seeks: list[tuple[TopicPartition, int]] = field(default_factory=list)
    stopped: bool = False
    assigned: set[TopicPartition] = field(default_factory=lambda: {TP})
    # Runs while a committed offset is asked for: what the coordinator does meanwhile.
    meanwhile: Callable[[], None] = lambda: None

    async def getmany(self, timeout_ms: int = 0, max_records: int = 0) -> dict[TopicPartition, list[Record]]:
        await asyncio.sleep(0)
        return self.fetches.pop(0) if self.fetches else {}

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def committed(self, tp: TopicPartition) -> int | None:
        await asyncio.sleep(0)
        self.meanwhile()
        return self.committed_offsets.get(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp not in self.assigned:
            # What aiokafka's subscription state does.
            msg = f"No current assignment for partition {tp}"
            raise IllegalStateError(msg)
        self.seeks.append((tp, offset))

    async def stop(self) -> None:
        self.stopped = True


class FakeRouter:
    def __init__(self) -> None:
        self.committed: list[Batch] = []

    def commit(self, batch: Batch) -> None:
        self.committed.append(batch)


def engine_with(consumer: FakeConsumer, transact: Callable[..., Awaitable[None]]) -> TransactionalEngine:
    router: Any = FakeRouter()
    engine = TransactionalEngine(KafkaSettings(), router, group_id="g", transactional_prefix="t")
    fake: Any = consumer
    engine._consumer = fake
    engine._cluster = type("Cluster", (), {"topics": staticmethod(set)})()

    async def decide(share: dict[TopicPartition, list[Any]], batch: Batch) -> Any:
        return batch, [], []

    async def no_pause(failures: int) -> None:
        return None

    # The fakes stand in for the methods: mypy refuses any assignment to a method.
    engine._decide = decide  # type: ignore[method-assign]
    engine._transact = cast("Any", transact)  # type: ignore[method-assign]
    engine._pause = no_pause  # type: ignore[method-assign]
    return engine


async def test_a_failed_commit_of_a_partition_never_committed_is_read_again_from_its_first_record() -> None:
    # A new tenant's topic: nothing committed yet. Batch N (offsets 0-1) fails while
    # batch N+1 (offsets 2-3) is fetched and decided behind it.
    consumer = FakeConsumer([{TP: [Record(0), Record(1)]}, {TP: [Record(2), Record(3)]}])
    calls = 0

    async def transact(partition: int, share: Any, outputs: Any) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        raise KafkaConnectionError

    engine = engine_with(consumer, transact)
    await engine._turn()
    await engine._turn()
    assert calls == 1  # N+1 decided on what N staged: it never commits
    # Everything from N's first record is read again, or records 0 and 1 are lost.
    assert consumer.seeks[-1] == (TP, 0)
    assert engine._aborts == 1


async def test_a_forced_stop_does_not_wait_for_a_commit_that_never_ends() -> None:
    consumer = FakeConsumer([])

    async def transact(partition: int, share: Any, outputs: Any) -> None:
        raise AssertionError  # nothing is fetched

    engine = engine_with(consumer, transact)

    async def hang() -> None:
        await asyncio.Event().wait()

    hanging = asyncio.create_task(hang())
    in_flight: dict[TopicPartition, list[Any]] = {TP: [Record(0)]}
    engine._in_flight = _InFlight(in_flight, NOTHING_STAGED, hanging)
    run = asyncio.create_task(engine.run())
    for _ in range(5):
        await asyncio.sleep(0)
    # The grace is over (RouterService cancels the run loop once): it has to end.
    run.cancel()
    await asyncio.wait({run}, timeout=5)
    assert run.done()
    # The commit is bounded by stop(), as the consumer's and producers' close are.
    await engine.stop(close_within=0.01)
    assert hanging.cancelled()
    assert consumer.stopped
    await engine.stop(close_within=0.01)


async def failing(partition: int, share: Any, outputs: Any) -> None:
    await asyncio.sleep(0)
    raise KafkaConnectionError


async def test_a_partition_revoked_while_a_failed_batch_is_read_again_is_left_to_its_new_owner() -> None:
    consumer = FakeConsumer([{TP: [Record(0)]}, {TP: [Record(1)]}], committed_offsets={TP: 0})
    engine = engine_with(consumer, failing)
    await engine._turn()

    def revoke() -> None:
        # The rebalance completes while the rewind asks Kafka where TP was committed.
        consumer.assigned.discard(TP)

    consumer.meanwhile = revoke
    # The failure of the batch in flight is handled; the router keeps running.
    await engine._turn()
    assert engine._aborts == 1
    assert consumer.seeks == []


async def hang() -> None:
    await asyncio.Event().wait()


async def test_stop_is_bounded_while_a_rebalance_waits_for_a_commit_that_never_ends() -> None:
    consumer = FakeConsumer([])
    engine = engine_with(consumer, failing)
    hanging = asyncio.create_task(hang())
    in_flight: dict[TopicPartition, list[Any]] = {TP: [Record(0)]}
    engine._in_flight = _InFlight(in_flight, NOTHING_STAGED, hanging)
    # The revoke callback holds the engine's lock while it waits for the batch in flight.
    revoking = asyncio.create_task(_Listener(engine).on_partitions_revoked([TP]))
    for _ in range(5):
        await asyncio.sleep(0)
    stopping = asyncio.create_task(engine.stop(close_within=0.01))
    await asyncio.wait({stopping}, timeout=5)
    assert stopping.done()
    assert hanging.cancelled()
    assert consumer.stopped
    await revoking


async def test_a_poison_record_goes_one_by_one_even_while_another_partition_commits_between() -> None:
    # P1 holds a record no transaction takes; P0's traffic commits fine. Fetches alternate
    # (partitions on different leaders answer apart): P0's commits must not reset the
    # count of P1's aborts, or P1 never reaches one-by-one mode and stalls for good.
    p0, p1 = TopicPartition(TP.topic, 0), TopicPartition(TP.topic, 1)
    poison = Record(666)
    script: list[dict[TopicPartition, list[Record]]] = []
    for n in range(6):
        script += [{p1: [poison]}, {p0: [Record(n)]}, {p0: [Record(n)]}]
    consumer = FakeConsumer(script, assigned={p0, p1})

    async def transact(partition: int, share: dict[TopicPartition, list[Record]], outputs: Any) -> None:
        await asyncio.sleep(0)
        if poison in share.get(p1, []):
            raise KafkaConnectionError

    engine = engine_with(consumer, transact)
    most = 0
    while consumer.fetches and most < 3:
        await engine._turn()
        most = max(most, engine._aborts)
    assert most >= 3


async def test_records_a_top_up_took_are_read_again_when_the_batch_fails_before_it_commits() -> None:
    # Batch N (offset 0) commits slowly; behind it, offsets 1 and then 2 (a top-up) are taken,
    # and deciding offset 2 fails: nothing of 1-2 was written, so both are read again.
    tp2 = TopicPartition("prik.ingress.kommune-0101", 0)
    consumer = FakeConsumer([{TP: [Record(0)]}, {TP: [Record(1)]}, {tp2: [Record(2)]}])
    consumer.assigned = {TP, tp2}
    release = asyncio.Event()

    async def transact(partition: int, share: Any, outputs: Any) -> None:
        await release.wait()

    engine = engine_with(consumer, transact)

    async def decide(share: dict[TopicPartition, list[Any]], batch: Batch) -> Any:
        if tp2 in share:
            msg = "the tasks topic could not be read"
            raise KafkaConnectionError(msg)
        return batch, [], []

    engine._decide = decide  # type: ignore[method-assign]
    await engine._turn()  # N launched
    turn = asyncio.create_task(engine._turn())  # N+1 taken, topped up while N commits
    await asyncio.sleep(0.05)
    release.set()
    await turn
    assert engine.stats.aborted == 1
    # Never committed: read again from the first record taken, the top-up's partition too.
    assert set(consumer.seeks) >= {(TP, 1), (tp2, 2)}
