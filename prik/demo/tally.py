"""The demo's accounting: every message sent, the one receipt it must get, and its latency.

Receipts are matched by (sender source, message id), exactly as a sender would.
A receipt may be read before its message is registered (the reader and the
sender are different tasks), so such receipts wait in `_early` and are applied
when the message is registered: the accounting is exact whatever the interleaving.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from hdrh.histogram import HdrHistogram

from contracts import FINAL_STATUSES, MessageType, Outcome, TaskStatus

__all__ = ["MALFORMED_ROW", "ROW_ORDER", "Latency", "Row", "Tally", "row_of"]

MALFORMED_ROW = "malformed JSON"
ROW_ORDER = (
    "advisory.video-queue",
    "advisory.referral-status",
    "task.request",
    "task.status",
    MALFORMED_ROW,
)

# Microseconds, 1 µs to 1 h, 3 significant digits.
_LOWEST_US = 1
_HIGHEST_US = 3_600_000_000
_DIGITS = 3


def row_of(message_type: MessageType | str) -> str:
    """The table row of a message type: `dk.prik.task.request.v1` -> `task.request`."""
    return str(message_type).removeprefix("dk.prik.").removesuffix(".v1")


class Latency:
    """An HDR histogram of milliseconds, recorded at microsecond resolution."""

    def __init__(self) -> None:
        self._hist = HdrHistogram(_LOWEST_US, _HIGHEST_US, _DIGITS)

    def record_ms(self, ms: float) -> None:
        self._hist.record_value(min(_HIGHEST_US, max(_LOWEST_US, round(ms * 1000))))

    @property
    def count(self) -> int:
        return int(self._hist.get_total_count())

    def percentile_ms(self, percentile: float) -> float | None:
        if self.count == 0:
            return None
        return float(self._hist.get_value_at_percentile(percentile)) / 1000


@dataclass(slots=True)
class Row:
    sent: int = 0
    outcomes: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    duplicates: int = 0
    latency: Latency = field(default_factory=Latency)

    @property
    def finished(self) -> int:
        return sum(self.outcomes.values())

    @property
    def pending(self) -> int:
        return self.sent - self.finished


@dataclass(slots=True)
class _Message:
    row: str
    time: datetime
    clinic: str | None
    to_lps: bool
    outcome: Outcome | None = None
    receipts: int = 0
    seen_at_lps: bool = False


class Tally:
    def __init__(self, failing_clinic: str | None = None) -> None:
        self.rows: dict[str, Row] = {name: Row() for name in ROW_ORDER}
        self.all_latency = Latency()
        # The clinic whose endpoint fails on purpose; its retries would hide the path's own latency.
        self.healthy_latency = Latency()
        self._failing_clinic = failing_clinic
        self._messages: dict[tuple[str, str], _Message] = {}
        self._by_id: dict[str, tuple[str, str]] = {}
        self._early: dict[tuple[str, str], list[Outcome]] = defaultdict(list)
        self._early_seen: dict[str, datetime] = {}
        self.send_failures = 0
        self.received_at_lps = 0
        # Task id -> whether its final status reached the requester.
        self._tasks: dict[str, bool] = {}
        self._delivered_tasks: set[str] = set()
        self._request_task: dict[tuple[str, str], str] = {}

    # -- what was sent -------------------------------------------------------------------

    def sent(
        self,
        source: str,
        message_id: str,
        row: str,
        time: datetime,
        *,
        clinic: str | None = None,
        to_lps: bool = False,
        task_id: str | None = None,
    ) -> None:
        key = (source, message_id)
        self._messages[key] = _Message(row, time, clinic, to_lps)
        self.rows[row].sent += 1
        if to_lps:
            self._by_id[message_id] = key
        if task_id is not None:
            self._tasks[task_id] = False
            self._request_task[key] = task_id
        for outcome in self._early.pop(key, []):
            self.receipt(source, message_id, outcome)
        seen = self._early_seen.pop(message_id, None)
        if seen is not None:
            self.lps_received(message_id, seen)

    def unsent(self, source: str, message_id: str) -> None:
        """Kafka refused the publish: the message does not count as sent."""
        message = self._messages.pop((source, message_id), None)
        if message is not None:
            self.rows[message.row].sent -= 1
            self.send_failures += 1
            self._by_id.pop(message_id, None)
            task = self._request_task.pop((source, message_id), None)
            if task is not None:
                self._tasks.pop(task, None)

    # -- what came back -----------------------------------------------------------------

    def receipt(self, source: str, message_id: str, outcome: Outcome) -> None:
        key = (source, message_id)
        message = self._messages.get(key)
        if message is None:
            self._early[key].append(outcome)
            return
        message.receipts += 1
        row = self.rows[message.row]
        if message.receipts > 1:
            row.duplicates += 1
            return
        message.outcome = outcome
        row.outcomes[outcome] += 1
        task = self._request_task.get(key)
        if task is not None and outcome is Outcome.DELIVERED:
            self._delivered_tasks.add(task)

    def lps_received(self, message_id: str, received_at: datetime) -> None:
        """The reference LPS accepted a message (first copy only): its end-to-end latency."""
        key = self._by_id.get(message_id)
        message = self._messages.get(key) if key is not None else None
        if message is None:
            self._early_seen[message_id] = received_at
            return
        if message.seen_at_lps:
            return
        message.seen_at_lps = True
        self.received_at_lps += 1
        self._record(message, (received_at - message.time).total_seconds() * 1000)

    def task_status_seen(
        self, source: str, message_id: str, task_id: str, status: TaskStatus, seen_at: datetime
    ) -> None:
        """The requester read a forwarded task status on its replies topic."""
        message = self._messages.get((source, message_id))
        if message is not None and not message.seen_at_lps:
            message.seen_at_lps = True
            self._record(message, (seen_at - message.time).total_seconds() * 1000)
        if status in FINAL_STATUSES and task_id in self._tasks:
            self._tasks[task_id] = True

    def _record(self, message: _Message, ms: float) -> None:
        self.rows[message.row].latency.record_ms(ms)
        self.all_latency.record_ms(ms)
        if message.clinic != self._failing_clinic:
            self.healthy_latency.record_ms(ms)

    # -- the verdict ----------------------------------------------------------------------

    @property
    def sent_total(self) -> int:
        return sum(r.sent for r in self.rows.values())

    @property
    def pending(self) -> int:
        return sum(r.pending for r in self.rows.values())

    @property
    def duplicates(self) -> int:
        return sum(r.duplicates for r in self.rows.values())

    def outcome_total(self, outcome: Outcome) -> int:
        return sum(r.outcomes[outcome] for r in self.rows.values())

    @property
    def round_trips(self) -> tuple[int, int]:
        """(answered, delivered): tasks delivered to a clinic whose final status reached the requester."""
        answered = sum(1 for task in self._delivered_tasks if self._tasks.get(task))
        return answered, len(self._delivered_tasks)

    @property
    def unconfirmed(self) -> int:
        """Messages receipted `delivered` that the LPS never recorded: a receipt that lies."""
        return sum(
            1
            for m in self._messages.values()
            if m.to_lps and m.outcome is Outcome.DELIVERED and not m.seen_at_lps
        )

    def settled(self) -> bool:
        answered, delivered = self.round_trips
        return self.pending == 0 and answered == delivered

    def unreceipted(self, limit: int = 50) -> list[dict[str, str | None]]:
        """Some messages still waiting for their receipt (ids and clinics only: no patient data)."""
        waiting = [(key, m) for key, m in self._messages.items() if m.receipts == 0]
        return [
            {"source": source, "id": message_id, "type": m.row, "clinic": m.clinic}
            for (source, message_id), m in waiting[:limit]
        ]

    def problems(self) -> list[str]:
        """Why the run failed, one short phrase each; empty when every message is accounted for."""
        found = []
        if self.pending:
            found.append(f"{self.pending} message(s) without a final receipt")
        if self.duplicates:
            found.append(f"{self.duplicates} duplicate receipt(s)")
        if self.unconfirmed:
            found.append(f"{self.unconfirmed} message(s) receipted delivered but never seen by the LPS")
        answered, delivered = self.round_trips
        if answered != delivered:
            found.append(f"{delivered - answered} task(s) whose final status never reached the requester")
        return found
