"""Which offset of a partition may be committed: the lowest one whose outcome is not yet final."""

from __future__ import annotations

__all__ = ["OffsetTracker"]


class OffsetTracker:
    """Offsets of one partition handed to workers, and which of them are finished.

    Messages of one partition finish out of order (clinics deliver independently),
    so the commit point is the lowest unfinished offset, or one past the highest
    seen when all are finished. Committing it never marks unfinished work done.
    Memory is the number of unfinished offsets, which the runtime bounds by
    pausing the partition.
    """

    __slots__ = ("_next", "_pending")

    def __init__(self) -> None:
        self._pending: set[int] = set()
        self._next: int | None = None

    def add(self, offset: int) -> None:
        """A consumed record whose outcome is not final yet."""
        self._pending.add(offset)
        if self._next is None or offset + 1 > self._next:
            self._next = offset + 1

    def done(self, offset: int) -> None:
        """The record at `offset` reached a final outcome (or needs none)."""
        self._pending.discard(offset)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def committable(self) -> int | None:
        """The offset to commit (the next record to read after a restart), or None before any record."""
        if self._pending:
            return min(self._pending)
        return self._next
