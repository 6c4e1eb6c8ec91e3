"""Rates and recent counts over time windows: pure, no Kafka, no clock of their own.

Two sources of rate, chosen by what a topic holds:

- `OffsetRates`: end-offset samples of a topic (ingress topics: written by the
  senders' idempotent, non-transactional producers, so one offset is one record,
  and the records themselves are never read: they may be hostile).
- `Buckets`: counts of records actually read, per second of their Kafka
  timestamps (delivery, replies and dead-letter topics: written by the router in
  transactions, whose commit markers take offsets too, so offset deltas would
  count up to twice the records at low rates).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["Buckets", "History", "OffsetRates"]


@dataclass(slots=True)
class OffsetRates:
    """Per-key rates from (time, end offsets) samples: the offsets gained over the last `span` seconds."""

    span: float = 10.0
    keep: float = 60.0
    _samples: deque[tuple[float, dict[str, int]]] = field(default_factory=deque)

    def add(self, at: float, ends: Mapping[str, int]) -> None:
        """A sample: the summed end offsets of each key's partitions at monotonic time `at`."""
        self._samples.append((at, dict(ends)))
        while self._samples and self._samples[0][0] < at - self.keep:
            self._samples.popleft()

    def rates(self) -> dict[str, float | None]:
        """Records per second per key over about `span` seconds; None until two samples hold the key.

        A key whose offsets went down (a topic deleted and made anew) reads as 0, not negative.
        """
        if not self._samples:
            return {}
        now, latest = self._samples[-1]
        base = self._baseline(now)
        out: dict[str, float | None] = {}
        for key, end in latest.items():
            if base is None or key not in base[1] or now <= base[0]:
                out[key] = None
                continue
            out[key] = max(0, end - base[1][key]) / (now - base[0])
        return out

    def _baseline(self, now: float) -> tuple[float, dict[str, int]] | None:
        """The oldest sample at most `span` seconds old, else the newest older one (sparse sampling)."""
        chosen: tuple[float, dict[str, int]] | None = None
        for sample in self._samples:
            if sample[0] >= now:
                break
            chosen = sample
            if sample[0] >= now - self.span:
                break
        return chosen


@dataclass(slots=True)
class Buckets:
    """Counts per key per whole second of record time, for the last `window` seconds."""

    window: int = 300
    _seconds: dict[int, Counter[Hashable]] = field(default_factory=dict)

    def add(self, timestamp_ms: int, key: Hashable, count: int = 1) -> None:
        second = timestamp_ms // 1000
        self._seconds.setdefault(second, Counter())[key] += count

    def prune(self, now: float) -> None:
        """Forget seconds older than the window ending at `now` (Unix seconds)."""
        oldest = int(now) - self.window
        for second in [s for s in self._seconds if s < oldest]:
            del self._seconds[second]

    def total(self, now: float, seconds: float | None = None) -> Counter[Hashable]:
        """Counts per key over the last `seconds` (the whole window when None) before `now`."""
        since = now - (self.window if seconds is None else seconds)
        out: Counter[Hashable] = Counter()
        for second, counts in self._seconds.items():
            if since <= second < now:
                out.update(counts)
        return out

    def rates(self, now: float, seconds: int = 10) -> dict[Hashable, float]:
        """Records per second per key over the last `seconds` complete seconds before `now`.

        The second `now` is in is left out: its records are still arriving.
        """
        end = int(now)
        out: Counter[Hashable] = Counter()
        for second in range(end - seconds, end):
            out.update(self._seconds.get(second, {}))
        return {key: count / seconds for key, count in out.items()}


@dataclass(slots=True)
class History:
    """The last `length` values per key, for the page's small trend lines."""

    length: int = 150
    _values: dict[str, deque[float | None]] = field(default_factory=dict)

    def add(self, values: Mapping[str, float | None], keys: Iterable[str]) -> None:
        for key in keys:
            line = self._values.setdefault(key, deque(maxlen=self.length))
            line.append(values.get(key))

    def of(self, key: str) -> list[float | None]:
        return list(self._values.get(key, ()))
