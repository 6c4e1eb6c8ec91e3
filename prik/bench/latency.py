"""Latency and arrival bookkeeping of one receiving end of `prik bench pipeline`.

Each arrival is recorded as (message time at publish -> arrival) on this machine's
wall clock, which publisher and receiver share, in an HDR histogram (hdrhistogram):
constant memory whatever the run's length, 3 significant digits.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

__all__ = ["Arrivals", "peak_rss_mb"]

# 1 µs .. 1 hour, 3 significant digits: about 200 KB whatever the count.
_LOWEST_US = 1
_HIGHEST_US = 3_600_000_000
_DIGITS = 3


def peak_rss_mb() -> float:
    """This process's peak resident set size, MB.

    VmHWM of /proc/self/status where there is one: Linux carries ru_maxrss across
    exec, so a child's ru_maxrss is at least what its parent used when it forked.
    """
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        status = ""
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Arrivals:
    """Counts arrivals once per message id and records their latency."""

    def __init__(self) -> None:
        self.histogram = HdrHistogram(_LOWEST_US, _HIGHEST_US, _DIGITS)
        self._seen: set[str] = set()
        self.warm = 0
        self.duplicates = 0
        self.first_at: float | None = None
        self.last_at: float | None = None

    @property
    def delivered(self) -> int:
        return len(self._seen)

    def record(self, message_id: str, sent_at: float, *, warm: bool) -> None:
        """One arrival of `message_id`, published at `sent_at` (Unix seconds); warm-ups are only counted."""
        now = time.time()
        if warm:
            self.warm += 1
            return
        if message_id in self._seen:
            self.duplicates += 1
            return
        self._seen.add(message_id)
        if self.first_at is None:
            self.first_at = now
        self.last_at = now
        micros = round((now - sent_at) * 1e6)
        self.histogram.record_value(min(max(micros, _LOWEST_US), _HIGHEST_US))

    def progress(self) -> dict[str, Any]:
        return {"event": "progress", "delivered": self.delivered, "warm": self.warm}

    def final(self) -> dict[str, Any]:
        h = self.histogram
        empty = h.get_total_count() == 0

        def ms(value: float) -> float | None:
            return None if empty else value / 1000

        return {
            "event": "final",
            "delivered": self.delivered,
            "duplicates": self.duplicates,
            "first_at": self.first_at,
            "last_at": self.last_at,
            "latency_ms": {
                "p50": ms(h.get_value_at_percentile(50)),
                "p99": ms(h.get_value_at_percentile(99)),
                "p999": ms(h.get_value_at_percentile(99.9)),
                "max": ms(h.get_max_value()),
                "mean": ms(h.get_mean_value()),
            },
            "peak_rss_mb": peak_rss_mb(),
        }
