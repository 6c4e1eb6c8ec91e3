"""What an LPS's consumer group has not committed yet, per delivery partition.

Offsets alone overstate it: the router writes delivery topics in transactions,
and each commit marker takes an offset, so a group that is fully caught up can
still sit one offset short of the end, and a waiting backlog of 4 messages can
span 6 offsets. While the gap is small (`limit` offsets) its records are read
once each, incrementally, and counted; beyond that the offset difference is
shown as an estimate. Either way the first waiting record names the clinic that
holds the partition back (a consumer commits only up to its lowest unfinished
message) and how long it has waited.

Pure bookkeeping: the collector reads the records and feeds them in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field

__all__ = ["Backlogs", "Waiting"]


@dataclass(frozen=True, slots=True)
class Waiting:
    offset: int
    timestamp_ms: int
    clinic: str | None  # a SOR code, or None when the key is not one


@dataclass(slots=True)
class _Backlog:
    start: int  # the group's committed offset
    upto: int  # every offset below this has been read
    exact: bool
    records: deque[Waiting] = field(default_factory=deque)


class Backlogs:
    """Per partition: the records between a group's committed offset and the end."""

    def __init__(self, limit: int = 1000) -> None:
        self.limit = limit
        self._by: dict[Hashable, _Backlog] = {}

    def plan(self, key: Hashable, committed: int, end: int) -> int | None:
        """Update for the group's `committed` offset and the partition's `end`; the offset to
        read from next, or None when nothing needs reading."""
        if end <= committed:
            self._by.pop(key, None)
            return None
        exact = end - committed <= self.limit
        backlog = self._by.get(key)
        if backlog is None or backlog.exact != exact or committed < backlog.start:
            # New, rewound (an offset reset), or switching between counting and estimating.
            backlog = self._by[key] = _Backlog(start=committed, upto=committed, exact=exact)
        elif not exact and committed != backlog.start:
            # Estimating: only the first waiting record matters, and it moved.
            backlog = self._by[key] = _Backlog(start=committed, upto=committed, exact=False)
        else:
            backlog.start = committed
            while backlog.records and backlog.records[0].offset < committed:
                backlog.records.popleft()
            backlog.upto = max(backlog.upto, committed)
        return backlog.upto if self.wants(key, end) else None

    def wants(self, key: Hashable, end: int) -> bool:
        """Whether reading on is still useful: up to the end when counting, to the first record else."""
        backlog = self._by.get(key)
        if backlog is None or backlog.upto >= end:
            return False
        return backlog.exact or not backlog.records

    def took(self, key: Hashable, record: Waiting) -> None:
        backlog = self._by.get(key)
        if backlog is None or record.offset < backlog.upto:
            return  # already counted (a fetch can hand a record back after a seek)
        if backlog.exact or not backlog.records:
            backlog.records.append(record)
        backlog.upto = record.offset + 1

    def reached(self, key: Hashable, position: int) -> None:
        """The reader's position: offsets below it hold no more records (markers, aborted data)."""
        backlog = self._by.get(key)
        if backlog is not None:
            backlog.upto = max(backlog.upto, position)

    def lag(self, key: Hashable, committed: int, end: int) -> tuple[int, bool]:
        """(records behind, whether counted): counted while small, else end minus committed."""
        backlog = self._by.get(key)
        if end <= committed:
            return 0, True
        if backlog is None or not backlog.exact or backlog.upto < end:
            return end - committed, False
        return sum(1 for r in backlog.records if r.offset < end), True

    def oldest(self, key: Hashable) -> Waiting | None:
        backlog = self._by.get(key)
        return backlog.records[0] if backlog is not None and backlog.records else None

    def forget(self, key: Hashable) -> None:
        self._by.pop(key, None)
