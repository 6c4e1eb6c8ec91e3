"""Per-partition bookkeeping and per-clinic lanes.

Each clinic's messages of a partition form one lane: a FIFO worked by one task,
so a clinic's order holds through retries while every other clinic proceeds.
Lanes come and go with their work, so idle clinics cost nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka.structs import TopicPartition

from .offsets import OffsetTracker
from .pipeline import Phase, Record
from .stats import HealthReport

__all__ = ["Lane", "PartitionWork", "assess_health", "clinic_of"]


@dataclass(slots=True)
class Lane:
    """One clinic's pending records of one partition, oldest first, and the task working them."""

    clinic: str
    queue: deque[Record] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None
    phase: Phase = field(default_factory=Phase)


@dataclass(slots=True)
class PartitionWork:
    """What this consumer holds of one assigned partition."""

    tp: TopicPartition
    tracker: OffsetTracker = field(default_factory=OffsetTracker)
    lanes: dict[str, Lane] = field(default_factory=dict)
    paused: bool = False
    committed: int | None = None

    def tasks(self) -> list[asyncio.Task[None]]:
        return [lane.task for lane in self.lanes.values() if lane.task is not None]

    def to_commit(self) -> int | None:
        """The offset to commit now, or None when nothing new is final."""
        offset = self.tracker.committable()
        if offset is None or (self.committed is not None and offset <= self.committed):
            return None
        return offset


def clinic_of(key: bytes | None, recipient: str | None) -> str:
    """The lane a record belongs to: its key (the clinic SOR, so order per key holds)."""
    if key is not None:
        try:
            return key.decode("utf-8")
        except UnicodeDecodeError:
            return key.hex()
    return recipient or "-"


def assess_health(
    *,
    running: bool,
    fetched_ago: float,
    parts: Iterable[PartitionWork],
    stall_after: float,
    progress: datetime | None,
) -> HealthReport:
    """Progress, not mere liveness (Svix #1844): the fetch loop polls, and no clinic's step is overdue.

    Every step of a lane has a budget (a delivery attempt its timeout, a retry wait
    its delay, a publish its budget); a step `stall_after` seconds past its budget
    means that clinic stopped moving. A long retry wait is not a stall.
    """
    parts = list(parts)
    pending = sum(part.tracker.pending for part in parts)

    def report(healthy: bool, reason: str) -> HealthReport:
        return HealthReport(healthy=healthy, reason=reason, pending=pending, progress=progress)

    if not running:
        return report(False, "not running")
    if fetched_ago > stall_after:
        return report(False, f"no fetch for {fetched_ago:.0f} s")
    now = time.monotonic()
    for part in parts:
        for lane in part.lanes.values():
            due = lane.phase.due
            if due is not None and now > due + stall_after:
                return report(False, f"clinic {lane.clinic} stuck in {lane.phase.name}")
            if lane.task is None and lane.queue:
                return report(False, f"clinic {lane.clinic} has work but no worker")
    return report(True, "ok" if pending else "idle")
