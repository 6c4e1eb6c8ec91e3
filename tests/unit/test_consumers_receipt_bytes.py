"""ReceiptWriter: the receipt's record value, byte for byte what `to_bytes(build_receipt(...))` writes.

Generated messages (ids over the whole printable-ASCII alphabet the contract allows,
quotes and backslashes included, tenants, two message types), clinics that are SOR codes
or lane names, every final outcome, reasons or none, attempts, and times with and without
microseconds across the years the contract allows.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from unittest import mock

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from consumers.receipts import _RECEIPT_NAMESPACE, ReceiptWriter, build_receipt, receipt_id
from contracts import Message, Outcome, ParseError, Receipt, parse, to_bytes
from contracts.limits import MAX_YEAR, MIN_YEAR
from producers import task_request, video_queue_notice

_IDS = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)
_TENANTS = st.from_regex(r"[a-z0-9][a-z0-9-]{1,20}", fullmatch=True)
_SORS = st.from_regex(r"[0-9]{11,18}", fullmatch=True)
_CLINICS = st.one_of(_SORS, st.sampled_from(["-", "unreadable", "key-0123456789abcdef", "12345\n"]))
# Hypothesis takes naive bounds and adds the zone itself.
_FIRST, _LAST = datetime(MIN_YEAR, 1, 1), datetime(MAX_YEAR, 12, 31)  # noqa: DTZ001  see above
_UTC_TIMES = st.datetimes(min_value=_FIRST, max_value=_LAST, timezones=st.just(UTC))
_TIMES = _UTC_TIMES | _UTC_TIMES.map(lambda t: t.replace(microsecond=0))
_REASONS = st.one_of(st.none(), st.text(min_size=1, max_size=30))


def _message(sender: str, recipient: str, message_id: str, kind: str) -> Message:
    if kind == "task":
        return task_request(sender, recipient, code="callback", message_id=message_id)
    return video_queue_notice(sender, recipient, event="joined", queue_entry_id="q", message_id=message_id)


def _built(lps: str, message: Message, outcome: Outcome, at: datetime, **fields: Any) -> bytes:
    """What the builder writes, its envelope time being `at` (as the writer's is)."""
    with mock.patch("producers.build.utc_now", return_value=at):
        return to_bytes(build_receipt(lps, message, outcome, at=at, **fields))


@settings(max_examples=500, deadline=None)
@given(
    lps=_TENANTS,
    sender=_TENANTS,
    message_id=_IDS,
    recipient=_SORS,
    clinic=_CLINICS,
    outcome=st.sampled_from([Outcome.DELIVERED, Outcome.EXPIRED, Outcome.DEAD_LETTERED]),
    attempts=st.integers(min_value=0, max_value=10_000),
    at=_TIMES,
    reason=_REASONS,
    kind=st.sampled_from(["video", "task"]),
)
def test_receipt_value_is_the_builders_bytes(
    *,
    lps: str,
    sender: str,
    message_id: str,
    recipient: str,
    clinic: str,
    outcome: Outcome,
    attempts: int,
    at: datetime,
    reason: str | None,
    kind: str,
) -> None:
    try:
        message = _message(sender, recipient, message_id, kind)
    except ParseError:
        assume(False)  # an id the contract refuses (CPR-shaped): no message to receipt
        raise
    fields: dict[str, Any] = {"recipient": clinic, "attempts": attempts, "reason": reason}
    # The builder's way (a reason) too sets the envelope's time to `at`.
    with mock.patch("producers.build.utc_now", return_value=at):
        got = ReceiptWriter(lps).value(message, outcome, at=at, **fields)
    assert got == _built(lps, message, outcome, at, **fields)


def test_delivered_receipt_without_recipient_leaves_it_out() -> None:
    message = video_queue_notice("minlaege-video", "123456789012", event="joined", queue_entry_id="q")
    message = message.model_copy(update={"recipient": None})
    at = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    got = ReceiptWriter("lps-xmo").value(
        message, Outcome.DELIVERED, recipient="-", attempts=1, reason=None, at=at
    )
    assert b"recipient" not in got
    assert got == _built("lps-xmo", message, Outcome.DELIVERED, at, recipient="-", attempts=1)


def test_a_time_not_in_utc_takes_the_builder() -> None:
    message = video_queue_notice("minlaege-video", "123456789012", event="joined", queue_entry_id="q")
    at = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=2)))
    got = ReceiptWriter("lps-xmo").value(
        message, Outcome.DELIVERED, recipient=None, attempts=1, reason=None, at=at
    )
    receipt = parse(got)
    assert isinstance(receipt, Receipt)
    assert receipt.data.at == at
    assert b'"at":"2026-03-04T03:06:07Z"' in got


@settings(max_examples=300, deadline=None)
@given(lps=_TENANTS, sender=_TENANTS, message_id=_IDS)
def test_writer_receipt_id_is_the_uuid5(lps: str, sender: str, message_id: str) -> None:
    message = video_queue_notice(
        sender, "123456789012", event="joined", queue_entry_id="q", message_id=message_id
    )
    expected = str(uuid.uuid5(_RECEIPT_NAMESPACE, f"{lps}|{message.source}|{message.id}"))
    assert ReceiptWriter(lps).receipt_id(message) == expected == receipt_id(lps, message)
