"""Per-party accounting from the records themselves: pure, no I/O.

`UsageTally` is fed the records of a window, in any order and from any number
of partitions, and turns them into a `Usage`:

- **senders**: a record counts for the tenant whose ingress topic it is on,
  whatever it claims. `messages` counts records, `bytes` their values. The
  outcomes count each message (a tenant's message id) once: a record that is
  not a readable prik message is `rejected` on its own (it has no id to match);
  a readable one takes the outcome of the receipts for its id on the tenant's
  replies topic. Several receipts for one id (a consumer's redelivery after a
  crash, a re-send after the dedup window, a replay from the dead-letter
  queue) count once, as the furthest the message got: delivered, else
  dead-lettered, else expired, else rejected. A message that reached the
  clinic once has been delivered, whatever a later copy met.
- **receivers**: per LPS, the messages of the window whose outcome is a receipt
  the LPS wrote (`source` `urn:prik:<lps>`) and the router accepted and
  forwarded to the sender's replies topic. Those receipts, not the ones on the
  LPS's own ingress topic, are exact: the router forwards only a receipt with a
  valid `prik-route` token (an LPS cannot confirm what it was never given) and
  drops a consumer's repeated receipt by its stable id, and each one is the
  same receipt the sender counts, so the receivers' and the senders' numbers
  agree to the message.
- **peak**: the busiest minute of all ingress records, and the tenant that sent
  most in it.

A receipt an LPS sends is a message of its own (it counts in the LPS's
`messages` and `bytes`) but gets no receipt back: a receipt about a receipt
would loop between the router and the LPS. Such messages are not `open`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from contracts import (
    MAX_MESSAGE_BYTES,
    Outcome,
    ParseError,
    Receipt,
    Tenants,
    parse,
    rfc3339,
    tenant_of_source,
)
from contracts.tenants import Role

__all__ = ["OUTCOME_FIELDS", "Peak", "ReceiverUsage", "SenderUsage", "Usage", "UsageTally"]

# The JSON field of each outcome (DESIGN.md "Accounting").
OUTCOME_FIELDS: dict[Outcome, str] = {
    Outcome.DELIVERED: "delivered",
    Outcome.EXPIRED: "expired",
    Outcome.REJECTED: "rejected",
    Outcome.DEAD_LETTERED: "dead_lettered",
}
# How far a message got; of several receipts for one message the furthest counts.
_RANK: dict[Outcome, int] = {
    Outcome.REJECTED: 1,
    Outcome.EXPIRED: 2,
    Outcome.DEAD_LETTERED: 3,
    Outcome.DELIVERED: 4,
}
_MINUTE_MS = 60_000


@dataclass(slots=True)
class SenderUsage:
    """One tenant as a sender."""

    messages: int = 0
    bytes: int = 0
    delivered: int = 0
    expired: int = 0
    rejected: int = 0
    dead_lettered: int = 0
    # Messages whose final receipt is not on the replies topic (yet): in flight, or
    # waiting for a retry. Not in the JSON of DESIGN.md; the table shows it.
    open: int = 0

    def count(self, outcome: Outcome) -> None:
        field_name = OUTCOME_FIELDS[outcome]
        setattr(self, field_name, getattr(self, field_name) + 1)

    def to_json(self) -> dict[str, int]:
        return {
            "messages": self.messages,
            "bytes": self.bytes,
            "delivered": self.delivered,
            "expired": self.expired,
            "rejected": self.rejected,
            "dead_lettered": self.dead_lettered,
        }


@dataclass(slots=True)
class ReceiverUsage:
    """One LPS as a receiver."""

    delivered: int = 0
    dead_lettered: int = 0
    clinics: int = 0

    def to_json(self) -> dict[str, int]:
        return {"delivered": self.delivered, "dead_lettered": self.dead_lettered, "clinics": self.clinics}


@dataclass(frozen=True, slots=True)
class Peak:
    """The busiest minute of ingress traffic; `at` and `tenant` are None when nothing was sent."""

    per_minute: int = 0
    at: datetime | None = None
    tenant: str | None = None
    # How many of the minute's records were `tenant`'s (the table shows it; not in the JSON).
    tenant_messages: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "per_minute": self.per_minute,
            "at": rfc3339(self.at) if self.at is not None else None,
            "tenant": self.tenant,
        }


@dataclass(frozen=True, slots=True)
class Usage:
    """Per-party accounting of one window, `since` (inclusive) to `until` (exclusive).

    `until` is the moment the end offsets were taken when the caller gave none.
    `missing_topics` names ingress or replies topics of the tenants file that do
    not exist on the cluster (they count as empty).
    """

    since: datetime
    until: datetime
    senders: dict[str, SenderUsage]
    receivers: dict[str, ReceiverUsage]
    peak: Peak
    missing_topics: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The JSON object of DESIGN.md "Accounting", as plain values (encode with `contracts.dumps`)."""
        return {
            "since": rfc3339(self.since),
            "senders": {tenant: row.to_json() for tenant, row in self.senders.items()},
            "receivers": {lps: row.to_json() for lps, row in self.receivers.items()},
            "peak": self.peak.to_json(),
        }

    @property
    def total(self) -> SenderUsage:
        """Every sender added up (`open` included)."""
        total = SenderUsage()
        for row in self.senders.values():
            for item in fields(SenderUsage):
                setattr(total, item.name, getattr(total, item.name) + getattr(row, item.name))
        return total


@dataclass(frozen=True, slots=True)
class _Final:
    """The furthest receipt seen for one message."""

    outcome: Outcome
    source: str
    recipient: str | None


@dataclass(slots=True)
class _Sender:
    usage: SenderUsage = field(default_factory=SenderUsage)
    # Ids of the readable messages of the window that expect a receipt.
    ids: set[str] = field(default_factory=set)


def _ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        msg = "accounting needs aware date-times"
        raise ValueError(msg)
    return int(moment.timestamp() * 1000)


class UsageTally:
    """Accumulates the records of a window; `result()` gives the `Usage`.

    Records come as Kafka hands them over: the tenant of the topic, the record
    timestamp (ms since the epoch), value and headers. Ingress and replies
    records may come interleaved and in any order. Every tenant of `tenants`
    is a sender and every LPS a receiver, also with nothing to count.
    """

    def __init__(
        self,
        tenants: Tenants,
        since: datetime,
        until: datetime | None = None,
        *,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self.since = since
        self.until = until
        self._since_ms = _ms(since)
        self._until_ms = _ms(until) if until is not None else None
        self._max_bytes = max_message_bytes
        self._senders: dict[str, _Sender] = {tenant: _Sender() for tenant in tenants.ids}
        self._lps: tuple[str, ...] = tuple(t.id for t in tenants.tenant if t.role is Role.LPS)
        self._finals: dict[tuple[str, str], _Final] = {}
        self._per_minute: Counter[int] = Counter()
        self._per_minute_tenant: Counter[tuple[int, str]] = Counter()
        # Topics of the tenants file the cluster does not have (the reader fills it in).
        self.missing_topics: tuple[str, ...] = ()

    def in_window(self, timestamp_ms: int) -> bool:
        if timestamp_ms < self._since_ms:
            return False
        return self._until_ms is None or timestamp_ms < self._until_ms

    def load(self, tenant: str, timestamp_ms: int, size: int) -> bool:
        """One ingress record's load alone (messages, bytes, peak), unread; False outside the window.

        Cheap: `traffic()` takes only this, so a dashboard can ask about a day of
        traffic without validating every record of it.
        """
        return self._load(tenant, timestamp_ms, size) is not None

    def _load(self, tenant: str, timestamp_ms: int, size: int) -> _Sender | None:
        if not self.in_window(timestamp_ms):
            return None
        sender = self._senders.setdefault(tenant, _Sender())
        sender.usage.messages += 1
        sender.usage.bytes += size
        minute = timestamp_ms // _MINUTE_MS
        self._per_minute[minute] += 1
        self._per_minute_tenant[minute, tenant] += 1
        return sender

    def ingress(
        self, tenant: str, timestamp_ms: int, value: bytes | None, headers: Iterable[object] | None = ()
    ) -> bool:
        """One record of `tenant`'s ingress topic; False when it lies outside the window."""
        sender = self._load(tenant, timestamp_ms, len(value) if value is not None else 0)
        if sender is None:
            return False
        try:
            message = parse(value, headers, max_bytes=self._max_bytes)
        except ParseError:
            # The router refuses what it cannot read; with no id, no receipt can be matched to it.
            sender.usage.rejected += 1
            return True
        if not isinstance(message, Receipt):
            sender.ids.add(message.id)
        return True

    def reply(self, tenant: str, value: bytes | None, headers: Iterable[object] | None = ()) -> None:
        """One record of `tenant`'s replies topic: receipts count, task statuses do not."""
        try:
            message = parse(value, headers, max_bytes=self._max_bytes)
        except ParseError:
            # Only the router writes replies topics; nothing there to account for.
            return
        if not isinstance(message, Receipt):
            return
        data = message.data
        key = (tenant, data.message_id)
        known = self._finals.get(key)
        if known is None or _RANK[data.outcome] > _RANK[known.outcome]:
            self._finals[key] = _Final(data.outcome, message.source, data.recipient)

    def result(self, until: datetime | None = None) -> Usage:
        """The accounting so far; `until` names the window's end when the tally was given none."""
        receivers = {lps: ReceiverUsage() for lps in self._lps}
        clinics: dict[str, set[str]] = {lps: set() for lps in self._lps}
        senders: dict[str, SenderUsage] = {}
        for tenant, sender in self._senders.items():
            # A copy: `result()` may be called again as more records come in.
            usage = replace(sender.usage)
            for message_id in sender.ids:
                final = self._finals.get((tenant, message_id))
                if final is None:
                    usage.open += 1
                    continue
                usage.count(final.outcome)
                self._receiver(receivers, clinics, final)
            senders[tenant] = usage
        for lps, seen in clinics.items():
            receivers[lps].clinics = len(seen)
        end = self.until or until or datetime.now(UTC)
        return Usage(self.since, end, senders, receivers, self._peak(), self.missing_topics)

    @staticmethod
    def _receiver(receivers: dict[str, ReceiverUsage], clinics: dict[str, set[str]], final: _Final) -> None:
        lps = tenant_of_source(final.source)
        receiver = receivers.get(lps) if lps is not None else None
        if receiver is None or lps is None:
            # The router's own receipts: nothing an LPS received.
            return
        if final.outcome is Outcome.DELIVERED:
            receiver.delivered += 1
            if final.recipient is not None:
                clinics[lps].add(final.recipient)
        elif final.outcome is Outcome.DEAD_LETTERED:
            receiver.dead_lettered += 1

    def _peak(self) -> Peak:
        if not self._per_minute:
            return Peak()
        # The busiest minute; of equally busy ones the latest, the one an operator looks at now.
        minute, count = max(self._per_minute.items(), key=lambda item: (item[1], item[0]))
        # Of equally busy tenants the first by name, so the answer never depends on reading order.
        tenant, sent = min(
            ((t, n) for (m, t), n in self._per_minute_tenant.items() if m == minute),
            key=lambda item: (-item[1], item[0]),
        )
        at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=minute * _MINUTE_MS)
        return Peak(per_minute=count, at=at, tenant=tenant, tenant_messages=sent)
