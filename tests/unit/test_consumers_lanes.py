"""A failing clinic's lane is bounded: its further records are deferred and read again, never lost.

The partition is simulated (a list of clinics by offset, read in order from a
position that seeks move), so every interleaving the seeks allow can be checked.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from aiokafka.structs import TopicPartition

from consumers.lanes import Admit, Lane, PartitionWork


class Simulation:
    """A partition, a fetch position and lanes whose clinics fail or not, round by round."""

    def __init__(self, clinics: list[str], lane_limit: int, batch: int) -> None:
        self.clinics = clinics
        self.limit = lane_limit
        self.batch = batch
        self.part = PartitionWork(TopicPartition("t", 0))
        self.position = 0
        self.taken: list[int] = []
        self.finished: set[int] = set()
        self.deferred = 0
        self.seeks = 0
        self.reads = 0

    def fetch(self) -> None:
        end = min(len(self.clinics), self.position + self.batch)
        for offset in range(self.position, end):
            self.reads += 1
            clinic = self.clinics[offset]
            verdict = self.part.admit(offset, clinic, self.limit)
            if verdict is Admit.TAKE:
                lane = self.part.lanes.setdefault(clinic, Lane(clinic))
                record: Any = offset  # the lane only counts its records here
                lane.queue.append(record)
                assert len(lane.queue) <= self.limit
                self.part.tracker.add(offset)
                self.taken.append(offset)
            elif verdict is Admit.DEFER:
                self.deferred += 1
        self.position = end

    def work(self, failing: set[str], per_round: int) -> None:
        for clinic, lane in list(self.part.lanes.items()):
            if clinic in failing:
                continue
            for _ in range(min(per_round, len(lane.queue))):
                offset: Any = lane.queue.popleft()  # offsets stand in for records here
                self.part.tracker.done(offset)
                self.finished.add(offset)
                self.part.release(clinic, len(lane.queue), self.limit)
            if not lane.queue:
                del self.part.lanes[clinic]

    def settle(self) -> None:
        target = self.part.reposition()
        if target is not None:
            self.position = target
            self.seeks += 1
        commit = self.part.to_commit()
        if commit is not None:
            # Committing `commit` says every record below it is finished.
            assert all(offset in self.finished for offset in range(commit)), commit
            self.part.committed = commit

    @property
    def done(self) -> bool:
        return len(self.finished) == len(self.clinics)


def _check(sim: Simulation) -> None:
    assert sorted(sim.taken) == list(range(len(sim.clinics)))  # each record taken exactly once
    for clinic in set(sim.clinics):
        mine = [offset for offset in sim.taken if sim.clinics[offset] == clinic]
        assert mine == sorted(mine)  # and each clinic's in order
    assert sim.part.to_commit() in {None, len(sim.clinics)}
    assert sim.part.committed == len(sim.clinics)
    assert not sim.part.behind


def test_a_failing_clinic_is_deferred_while_the_others_flow() -> None:
    clinics = ["bad"] * 30 + [f"ok-{n % 5}" for n in range(50)] + ["bad"] * 5
    sim = Simulation(clinics, lane_limit=4, batch=10)
    rounds = 0
    while not sim.done:
        rounds += 1
        assert rounds < 1000
        sim.fetch()
        sim.work(failing={"bad"} if rounds < 20 else set(), per_round=3)
        sim.settle()
        if rounds == 19:
            # While "bad" failed, every other clinic's record was finished; "bad" held at most 4.
            others = {n for n, clinic in enumerate(clinics) if clinic != "bad"}
            assert others <= sim.finished
            assert len(sim.part.lanes["bad"].queue) == 4
            assert sim.part.committed == 0  # never past bad's first unfinished record
            assert not sim.part.paused
    _check(sim)
    assert sim.deferred > 0
    assert sim.seeks > 0


@pytest.mark.parametrize("seed", range(60))
def test_random_failures_never_lose_reorder_or_repeat(seed: int) -> None:
    rng = random.Random(seed)
    names = [f"c{n}" for n in range(rng.randint(1, 6))]
    clinics = [rng.choice(names) for _ in range(rng.randint(1, 200))]
    sim = Simulation(clinics, lane_limit=rng.randint(1, 6), batch=rng.randint(1, 40))
    rounds = 0
    while not sim.done:
        rounds += 1
        assert rounds < 20_000
        sim.fetch()
        failing = {name for name in names if rng.random() < 0.5} if rounds < 200 else set()
        sim.work(failing, per_round=rng.randint(1, 4))
        sim.settle()
    _check(sim)


def test_a_stretch_holding_only_deferred_records_is_jumped_over() -> None:
    # "bad" keeps failing: its drained lane is read again, fills at once, and the rest is skipped.
    clinics = ["bad"] * 6 + [f"ok-{n}" for n in range(100)] + ["bad"] * 6
    sim = Simulation(clinics, lane_limit=2, batch=5)
    while sim.position < len(clinics):
        sim.fetch()
        sim.work(failing={"bad"}, per_round=100)
        sim.settle()
    assert sim.part.behind["bad"].next_from == 2
    sim.work(failing=set(), per_round=2)  # bad's lane drains
    sim.settle()
    assert sim.position == 2  # back to bad's first deferred record
    reads = sim.reads
    sim.fetch()  # takes 2 and 3, defers 4 and 5 again, skips ok-0
    assert sim.taken[-2:] == [2, 3]
    sim.settle()
    assert sim.position == len(clinics)  # nothing but deferred records up to the end: jumped over
    assert sim.reads - reads == 5
    assert sim.part.to_commit() is None  # still 2: bad's 2 and 3 are not finished
    sim.work(failing=set(), per_round=100)
    while not sim.done:
        sim.settle()
        sim.fetch()
        sim.work(failing=set(), per_round=100)
    sim.settle()
    _check(sim)
