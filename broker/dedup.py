"""Drop re-sent messages: (source, id) seen within a window, per ingress partition.

A message's key decides its partition, so every copy of one message reaches
the one router instance that owns that partition: the window is partition
state, kept where the partition is owned, dropped when it is revoked.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta

__all__ = ["DEFAULT_DEDUP_WINDOW", "DedupWindow"]

# Senders re-send after a timeout within seconds to minutes; Kafka-level
# retries are already covered by idempotent producers. 15 minutes is also the
# default life of a video-queue notice, the most re-sent message type.
DEFAULT_DEDUP_WINDOW = timedelta(minutes=15)
# Bounds memory (~175 bytes an entry, measured: README, benchmark) under a flood of unique ids.
DEFAULT_MAX_ENTRIES = 500_000

_Key = tuple[str, str]


class DedupWindow:
    def __init__(
        self,
        window: timedelta = DEFAULT_DEDUP_WINDOW,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = window.total_seconds()
        self._max = max_entries
        self._clock = clock
        self._seen: dict[tuple[str, int], OrderedDict[_Key, float]] = {}

    def seen(self, topic: str, partition: int, source: str, message_id: str) -> bool:
        entries = self._seen.get((topic, partition))
        if entries is None:
            return False
        stamp = entries.get((source, message_id))
        return stamp is not None and self._clock() - stamp < self._window

    def add(self, topic: str, partition: int, source: str, message_id: str, *, age: float = 0.0) -> None:
        """Remember a message; `age` (seconds) back-dates one read again from the log."""
        entries = self._seen.get((topic, partition))
        if entries is None:
            entries = self._seen[topic, partition] = OrderedDict()
        now = self._clock()
        key = (source, message_id)
        if key in entries:
            entries.move_to_end(key)
        entries[key] = now - age
        window, most = self._window, self._max
        while entries:
            oldest = next(iter(entries.values()))
            if now - oldest < window and len(entries) <= most:
                break
            entries.popitem(last=False)

    @property
    def window_seconds(self) -> float:
        return self._window

    def has(self, topic: str, partition: int) -> bool:
        return (topic, partition) in self._seen

    def keep_only(self, owned: set[tuple[str, int]]) -> None:
        """Drop the windows of partitions this instance no longer owns."""
        for key in [k for k in self._seen if k not in owned]:
            del self._seen[key]

    def __len__(self) -> int:
        return sum(len(e) for e in self._seen.values())
