"""What the runtime counts, and what "healthy" means: it makes progress, not merely runs."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from contracts import Outcome, rfc3339

__all__ = ["ConsumerStats", "HealthReport", "OutcomeEvent"]


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
