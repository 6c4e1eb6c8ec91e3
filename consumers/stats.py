"""What the runtime counts, and what "healthy" means: it makes progress, not merely runs.

`ConsumerStats` are plain counters (JSON at `/health`, `/metrics.json` and for the
demo); `ConsumerMetrics` are the Prometheus series of DESIGN.md at `/metrics`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from prometheus_client import CollectorRegistry, Gauge, Histogram
from prometheus_client import Counter as PromCounter

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
    """

    def __init__(self, lps: str) -> None:
        self.lps = lps
        self.registry = CollectorRegistry()
        self.deliveries = PromCounter(
            "prik_deliveries",
            "Messages taken to a final outcome (delivered, expired, dead-lettered), by LPS.",
            ["lps", "outcome"],
            registry=self.registry,
        )
        self.attempts = PromCounter(
            "prik_delivery_attempts",
            "Delivery attempts to the LPS endpoint, by result.",
            ["lps", "result"],
            registry=self.registry,
        )
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
        self._outcomes = {outcome: self.deliveries.labels(lps, outcome.value) for outcome in _OUTCOMES}
        self._attempts = {result: self.attempts.labels(lps, result) for result in ATTEMPT_RESULTS}
        self._latency = self.latency.labels(lps)
        self.oldest.labels(lps).set(0)

    def outcome(self, outcome: Outcome) -> None:
        series = self._outcomes.get(outcome)
        if series is None:
            series = self._outcomes[outcome] = self.deliveries.labels(self.lps, outcome.value)
        series.inc()

    def attempt(self, result: AttemptResult) -> None:
        self._attempts[result].inc()

    def answered(self, message_time: datetime, at: datetime | None = None) -> None:
        """The LPS accepted a message: observe its latency (a sender's clock ahead of ours counts as 0)."""
        seconds = ((at or datetime.now(UTC)) - message_time).total_seconds()
        self._latency.observe(max(0.0, seconds))

    def undelivered(self, oldest: datetime | None, now: datetime | None = None) -> None:
        age = 0.0 if oldest is None else ((now or datetime.now(UTC)) - oldest).total_seconds()
        self.oldest.labels(self.lps).set(max(0.0, age))

    def lags(self, group: str, lags: Iterable[tuple[str, int, int]]) -> None:
        set_lags(self.lag, group, lags)


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
