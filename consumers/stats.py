"""What the runtime counts, and what "healthy" means: it makes progress, not merely runs.

`ConsumerStats` are plain counters (JSON at `/health`, `/metrics.json` and for the
demo); `ConsumerMetrics` are the Prometheus series of DESIGN.md at `/metrics`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.metrics_core import Metric

from contracts import Outcome, rfc3339
from prik.metrics import LATENCY_BUCKETS, lag_gauge, set_lags

__all__ = [
    "ATTEMPT_RESULTS",
    "AttemptResult",
    "ConsumerMetrics",
    "ConsumerStats",
    "HealthReport",
    "OutcomeEvent",
]

AttemptResult = Literal["ok", "retry", "refused", "gone", "timeout", "error"]
# ok: 2xx; retry: retriable (429, 5xx, connection, the webhook's own timeout); refused: other 4xx;
# gone: 410; timeout: the attempt outlived `attempt_timeout`; error: the deliverer raised anything else.
ATTEMPT_RESULTS: tuple[AttemptResult, ...] = ("ok", "retry", "refused", "gone", "timeout", "error")
# A consumer never rejects (that is the router's verdict): these are its final outcomes.
_OUTCOMES = (Outcome.DELIVERED, Outcome.EXPIRED, Outcome.DEAD_LETTERED)


class ConsumerMetrics:
    """One LPS consumer's Prometheus series, in a registry of its own.

    Every label value is fixed here (the consumer's LPS id is its operator's
    configuration, results and outcomes are the sets above), so no record can add
    a series. Every series exists from the start at 0, so `rate()` sees the first event.

    Outcomes and attempts are counted in plain integers and handed to their Prometheus
    counters when the registry is collected (a scrape, `exposition`): two locked `inc`
    calls a message were ~2 % of the consumer's CPU, and a scrape sees the same values.
    """

    def __init__(self, lps: str) -> None:
        self.lps = lps
        self.registry = CollectorRegistry()
        # Not registered themselves: `_Counted` brings them up to date, then collects them.
        self.deliveries = PromCounter(
            "prik_deliveries",
            "Messages taken to a final outcome (delivered, expired, dead-lettered), by LPS.",
            ["lps", "outcome"],
            registry=None,
        )
        self.attempts = PromCounter(
            "prik_delivery_attempts",
            "Delivery attempts to the LPS endpoint, by result.",
            ["lps", "result"],
            registry=None,
        )
        self.registry.register(_Counted(self))
        self.latency = Histogram(
            "prik_delivery_latency_seconds",
            "From the message's time to the LPS accepting it.",
            ["lps"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.oldest = Gauge(
            "prik_oldest_undelivered_seconds",
            "Age (from its time) of the oldest message this consumer holds without a final outcome.",
            ["lps"],
            registry=self.registry,
        )
        self.lag = lag_gauge(self.registry)
        # The series themselves, looked up once: `labels()` costs a few µs on every message.
        self._outcomes = {outcome.value: self.deliveries.labels(lps, outcome.value) for outcome in _OUTCOMES}
        self._attempts: dict[str, PromCounter] = {r: self.attempts.labels(lps, r) for r in ATTEMPT_RESULTS}
        self._latency = self.latency.labels(lps)
        self.oldest.labels(lps).set(0)
        # Counted since the last collection, by outcome value and by result.
        self._outcome_counts: dict[str, int] = dict.fromkeys(self._outcomes, 0)
        self._attempt_counts: dict[str, int] = dict.fromkeys(self._attempts, 0)

    def outcome(self, outcome: Outcome) -> None:
        # By value: a str hashes in C, an Enum member through Python.
        counts, value = self._outcome_counts, outcome.value
        counts[value] = counts.get(value, 0) + 1

    def attempt(self, result: AttemptResult) -> None:
        self._attempt_counts[result] += 1

    def flush(self) -> None:
        """Hand what was counted since the last collection to the Prometheus counters."""
        for counts, series, labels in (
            (self._outcome_counts, self._outcomes, self.deliveries),
            (self._attempt_counts, self._attempts, self.attempts),
        ):
            for key, count in counts.items():
                if count:
                    counts[key] = 0
                    child = series.get(key)
                    if child is None:
                        child = series[key] = labels.labels(self.lps, key)
                    child.inc(count)

    def answered(self, message_time: datetime, at: datetime | None = None) -> None:
        """The LPS accepted a message: observe its latency (a sender's clock ahead of ours counts as 0)."""
        seconds = ((at or datetime.now(UTC)) - message_time).total_seconds()
        self._latency.observe(max(0.0, seconds))

    def undelivered(self, oldest: datetime | None, now: datetime | None = None) -> None:
        age = 0.0 if oldest is None else ((now or datetime.now(UTC)) - oldest).total_seconds()
        self.oldest.labels(self.lps).set(max(0.0, age))

    def lags(self, group: str, lags: Iterable[tuple[str, int, int]]) -> None:
        set_lags(self.lag, group, lags)


class _Counted:
    """The outcome and attempt counters in the registry, brought up to date whenever collected."""

    def __init__(self, metrics: ConsumerMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterator[Metric]:
        yield from self._metrics.deliveries.describe()
        yield from self._metrics.attempts.describe()

    def collect(self) -> Iterator[Metric]:
        self._metrics.flush()
        yield from self._metrics.deliveries.collect()
        yield from self._metrics.attempts.collect()


@dataclass(slots=True)
class ConsumerStats:
    """Counters since start. `progress` is when the last message reached a final outcome."""

    delivered: int = 0
    expired: int = 0
    dead_lettered: int = 0
    skipped: int = 0
    attempts: int = 0
    retries: int = 0
    receipts: int = 0
    consumed: int = 0
    # Records left in Kafka because their clinic's lane was full, and the seeks that read them again.
    deferred: int = 0
    refetches: int = 0
    paused_partitions: int = 0
    # Receipts or dead letters Kafka refused for good (not authorised, too large): an operator's problem.
    unwritable: int = 0
    endpoint_disabled: bool = False
    progress: datetime | None = None
    in_flight: Counter[str] = field(default_factory=Counter)

    def count(self, outcome: Outcome) -> None:
        if outcome is Outcome.DELIVERED:
            self.delivered += 1
        elif outcome is Outcome.EXPIRED:
            self.expired += 1
        else:
            self.dead_lettered += 1

    def snapshot(self) -> dict[str, object]:
        """The counters as plain JSON values (for `/metrics`, `/health` and the demo)."""
        return {
            "consumed": self.consumed,
            "delivered": self.delivered,
            "expired": self.expired,
            "dead_lettered": self.dead_lettered,
            "skipped": self.skipped,
            "attempts": self.attempts,
            "retries": self.retries,
            "receipts": self.receipts,
            "deferred": self.deferred,
            "refetches": self.refetches,
            "paused_partitions": self.paused_partitions,
            "unwritable": self.unwritable,
            "endpoint": "disabled" if self.endpoint_disabled else "enabled",
            "in_flight": sum(self.in_flight.values()),
            "in_flight_per_clinic": dict(self.in_flight),
            "progress": rfc3339(self.progress) if self.progress is not None else None,
        }


@dataclass(frozen=True, slots=True)
class HealthReport:
    """Unhealthy when the consumer is stopped, its fetch loop stalled, a clinic's work is overdue,
    or the LPS endpoint is disabled (it answered 410 Gone): `endpoint` is then `"disabled"`.
    """

    healthy: bool
    reason: str
    pending: int
    progress: datetime | None
    endpoint: str = "enabled"


@dataclass(frozen=True, slots=True)
class OutcomeEvent:
    """One message's final outcome, handed to an `on_outcome` hook (the demo tallies these)."""

    message_id: str
    message_type: str
    message_source: str
    message_time: datetime
    clinic: str
    outcome: Outcome
    attempts: int
    reason: str | None
    at: datetime
