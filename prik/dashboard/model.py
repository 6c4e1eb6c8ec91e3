"""What the page shows, as `GET /api/state` serves it.

Every number says its unit in its name (`_per_s`: messages per second,
`records`, `_s`: seconds). Clinics appear by SOR code only, never by anything a
record's key or headers could smuggle in (a CPR number, a sender's free text).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "OUTCOMES",
    "DashboardState",
    "DeadLetterQueue",
    "FailingClinic",
    "Peak",
    "Receiver",
    "Router",
    "Sender",
    "WaitingClinic",
]

# The receipt outcomes (contracts.Outcome), in the order the page shows them.
OUTCOMES = ("delivered", "expired", "rejected", "dead-lettered")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Sender(_Frozen):
    id: str
    name: str | None = None
    # Records arriving on its ingress topic, over the last `rate_window_s`.
    per_s: float | None = None
    history_per_s: list[float | None] = Field(default_factory=list)
    # Records on its ingress topic the router has not yet committed.
    backlog_records: int | None = None
    # Receipts on its replies topic within `window_s`, by outcome.
    outcomes: dict[str, int] = Field(default_factory=dict)


class Receiver(_Frozen):
    id: str
    name: str | None = None
    # Records the router wrote to its delivery topic, over the last `rate_window_s`.
    per_s: float | None = None
    history_per_s: list[float | None] = Field(default_factory=list)
    # Consumer group `<prefix>-<lps>`: records it has not committed; `lag_exact` when
    # counted record by record, else (a large backlog) offsets, transaction markers included.
    lag_records: int | None = None
    lag_exact: bool = False
    # Age of the oldest record the group has not committed (the clinic holding it back).
    oldest_waiting_s: float | None = None
    consumers: int | None = None
    group_state: str | None = None
    # Receipts this LPS's consumer wrote (forwarded to the senders) within `window_s`.
    outcomes: dict[str, int] = Field(default_factory=dict)


class Router(_Frozen):
    group: str
    instances: int | None = None
    group_state: str | None = None
    backlog_records: int | None = None


class DeadLetterQueue(_Frozen):
    topic: str
    # Letters on the topic now. `exact`: counted record by record (equal to
    # `prik dlq list`); else end minus beginning offsets, which also counts the
    # router's transaction markers.
    depth_records: int | None = None
    exact: bool = False
    # Letters written within `window_s`, and those of stage `deliver` among them.
    recent_records: int = 0
    recent_deliver_records: int = 0


class FailingClinic(_Frozen):
    clinic: str  # a SOR code, nothing else
    lps: str | None = None
    dead_letters: int
    last_reason: str
    last_at: datetime


class WaitingClinic(_Frozen):
    clinic: str | None  # a SOR code, or None when the record's key is not one
    lps: str
    partition: int
    waiting_s: float


class Peak(_Frozen):
    """The busiest minute of ingress traffic since `since`, and who sent most in it."""

    per_minute: int
    at: datetime  # the start of the minute
    tenant: str | None = None
    tenant_per_minute: int | None = None
    since: datetime | None = None


class DashboardState(_Frozen):
    generated_at: datetime
    prefix: str
    bootstrap: str
    window_s: int
    rate_window_s: int
    tick_s: float
    kafka_error: str | None = None
    ingress_per_s: float | None = None
    deliver_per_s: float | None = None
    history_ingress_per_s: list[float | None] = Field(default_factory=list)
    history_deliver_per_s: list[float | None] = Field(default_factory=list)
    outcomes: dict[str, int] = Field(default_factory=dict)
    senders: list[Sender] = Field(default_factory=list)
    receivers: list[Receiver] = Field(default_factory=list)
    router: Router | None = None
    dlq: DeadLetterQueue | None = None
    failing_clinics: list[FailingClinic] = Field(default_factory=list)
    # Clinics whose oldest delivery has waited `waiting_after_s` or longer.
    waiting_clinics: list[WaitingClinic] = Field(default_factory=list)
    waiting_after_s: float = 10.0
    peak: Peak | None = None
    peak_error: str | None = None
