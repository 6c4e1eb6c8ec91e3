"""Per-partition bookkeeping and per-clinic lanes.

Each clinic's messages of a partition form one lane: a FIFO worked by one task,
so a clinic's order holds through retries while every other clinic proceeds.
Lanes come and go with their work, so idle clinics cost nothing.

A lane holds at most `lane_limit` records. A clinic whose lane is full (its
endpoint keeps failing) is *deferred*: its further records are not kept in
memory but left in Kafka, uncommitted, while the partition keeps flowing for
every other clinic. Once the lane has drained to half, the partition is sought
back to the clinic's first deferred record and read again; records of that
stretch that were already taken (every other clinic's) are skipped, so nothing
is delivered twice. What was taken is known without a list of offsets: every
record below `seen` was taken, except a behind clinic's from its `next_from` on.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from aiokafka.structs import TopicPartition

from .offsets import OffsetTracker
from .pipeline import Phase, Record
from .stats import HealthReport

_SOR_RE = re.compile(r"[0-9]{11,18}")
# Per process: a lane name cannot be turned back into the key it came from.
_LANE_SALT = secrets.token_bytes(16)

__all__ = ["Admit", "Behind", "Lane", "PartitionWork", "assess_health", "clinic_of"]


class Admit(Enum):
    """What to do with a fetched record."""

    TAKE = "take"  # into its clinic's lane
    SKIP = "skip"  # read again after a seek, and taken before
    DEFER = "defer"  # its clinic is behind: leave it in Kafka, read it again later


@dataclass(slots=True)
class Lane:
    """One clinic's pending records of one partition, oldest first, and the task working them."""

    clinic: str
    queue: deque[Record] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None
    phase: Phase = field(default_factory=Phase)


@dataclass(slots=True)
class Behind:
    """A clinic with records of this partition not taken yet, from `next_from` on.

    `deferring`: its records are being left in Kafka (its lane was full);
    otherwise they are being read again after a seek and taken in order.
    `released`: its lane has drained; the fetch loop re-reads it at its next turn.
    """

    next_from: int
    deferring: bool = True
    released: bool = False


@dataclass(slots=True)
class PartitionWork:
    """What this consumer holds of one assigned partition."""

    tp: TopicPartition
    tracker: OffsetTracker = field(default_factory=OffsetTracker)
    lanes: dict[str, Lane] = field(default_factory=dict)
    paused: bool = False
    committed: int | None = None
    # One past the highest offset fetched so far, and one past the last one handed to `admit`.
    seen: int | None = None
    position: int | None = None
    behind: dict[str, Behind] = field(default_factory=dict)

    def tasks(self) -> list[asyncio.Task[None]]:
        return [lane.task for lane in self.lanes.values() if lane.task is not None]

    def admit(self, offset: int, clinic: str, lane_limit: int) -> Admit:
        """Whether to take, skip or defer the record at `offset` for `clinic` (fetched in order)."""
        reread = self.seen is not None and offset < self.seen
        self.position = offset + 1
        if not reread:
            self.seen = offset + 1
        state = self.behind.get(clinic)
        if state is None:
            if reread:
                return Admit.SKIP
            lane = self.lanes.get(clinic)
            if lane is not None and len(lane.queue) >= lane_limit:
                self.behind[clinic] = Behind(offset)
                return Admit.DEFER
            return Admit.TAKE
        if offset < state.next_from:
            return Admit.SKIP
        if state.deferring:
            return Admit.DEFER  # nothing of this clinic may pass its first deferred record
        lane = self.lanes.get(clinic)
        state.next_from = offset if lane is not None and len(lane.queue) >= lane_limit else offset + 1
        state.deferring = state.next_from == offset
        return Admit.DEFER if state.deferring else Admit.TAKE

    def release(self, clinic: str, left: int, lane_limit: int) -> None:
        """`clinic`'s lane shrank to `left`: once at half its limit, its deferred records may come back."""
        state = self.behind.get(clinic)
        if state is not None and state.deferring and left <= lane_limit // 2:
            state.released = True

    def reposition(self) -> int | None:
        """The offset to seek the partition to now, if any (the fetch loop calls this between fetches).

        Released clinics are read again from their first deferred record. While no clinic
        is being read again, a stretch that holds nothing new is jumped over.
        """
        target: int | None = None
        for state in self.behind.values():
            if state.released:
                state.deferring = state.released = False
                if self.position is not None and state.next_from < self.position:
                    target = state.next_from if target is None else min(target, state.next_from)
        if target is None and self.position is not None and self.seen is not None:
            rereading = any(not state.deferring for state in self.behind.values())
            if self.position < self.seen and not rereading:
                target = self.seen  # only deferred clinics' records, deferred again, lie in between
        if target is not None:
            self.position = target
        if self.position is not None and self.seen is not None and self.position >= self.seen:
            # Read everything again that was seen: the clinics caught up are no longer behind.
            for clinic in [c for c, state in self.behind.items() if not state.deferring]:
                del self.behind[clinic]
        return target

    def to_commit(self) -> int | None:
        """The offset to commit now, or None when nothing new is final.

        Never past a record not taken yet: a deferred clinic's first deferred record,
        or the read-again position of a clinic being caught up.
        """
        offset = self.tracker.committable()
        for state in self.behind.values():
            floor = state.next_from
            if not state.deferring and self.position is not None:
                floor = max(floor, self.position)
            offset = floor if offset is None else min(offset, floor)
        if offset is None or (self.committed is not None and offset <= self.committed):
            return None
        return offset

    @property
    def deferred_clinics(self) -> int:
        return sum(1 for state in self.behind.values() if state.deferring)


def clinic_of(key: bytes | None, recipient: str | None) -> str:
    """The lane a record belongs to: its key (the clinic SOR, so order per key holds).

    A key that is not a SOR code still gets a lane of its own, named by a keyed hash:
    lane names reach logs and metrics, and such a key may be anything (a CPR too).
    """
    if key is not None:
        text = key.decode("utf-8", "replace")
        if _SOR_RE.fullmatch(text):
            return text
        return "key-" + hmac.new(_LANE_SALT, key, hashlib.sha256).hexdigest()[:16]
    if recipient is not None and _SOR_RE.fullmatch(recipient):
        return recipient
    return "-"


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
