"""The pure accounting of `prik usage` (`prik.accounting.UsageTally`) on synthetic records."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console

from broker.outputs import receipt as router_receipt
from contracts import ConfigError, Message, Outcome, Tenants, dumps, parse, parse_tenants, to_binary, to_bytes
from prik.accounting import Usage, UsageTally
from prik.accounting.view import human_bytes, human_duration, usage_table
from prik.cli.usage import parse_since
from producers import receipt, task_request, task_status, video_queue_notice

VIDEO, KOMMUNE, LPS, OTHER_LPS = "minlaege-video", "kommune-0101", "lps-xmo", "lps-other"
CLINIC, OTHER_CLINIC, THIRD_CLINIC = "123456789012", "223456789012", "323456789012"
CPR = "0101701234"
SINCE = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
UNTIL = SINCE + timedelta(hours=1)

TENANTS: Tenants = parse_tenants(
    f"""
[[tenant]]
id = "{VIDEO}"
role = "producer"
may_send = ["dk.prik.advisory.video-queue.v1"]

[[tenant]]
id = "{KOMMUNE}"
role = "producer"
may_send = ["dk.prik.task.request.v1", "dk.prik.task.status.v1"]

[[tenant]]
id = "{LPS}"
role = "lps"

[[tenant]]
id = "{OTHER_LPS}"
role = "lps"
"""
)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def at(minutes: float = 0.0, seconds: float = 0.0) -> int:
    """A record timestamp `minutes` and `seconds` into the window."""
    return ms(SINCE + timedelta(minutes=minutes, seconds=seconds))


def notice(clinic: str = CLINIC, message_id: str | None = None) -> Message:
    return video_queue_notice(
        VIDEO, clinic, event="joined", queue_entry_id="q-1", cpr=CPR, message_id=message_id
    )


def lps_receipt(lps: str, message: Message, outcome: Outcome, clinic: str | None = None) -> bytes:
    return to_bytes(
        receipt(
            lps,
            message_id=message.id,
            message_source=message.source,
            message_type=message.type,
            outcome=outcome,
            recipient=clinic or message.recipient,
        )
    )


def by_router(tenant: str, message_id: str, outcome: Outcome, source: str | None = None) -> bytes:
    out = router_receipt(
        f"prik.replies.{tenant}",
        message_id=message_id,
        message_source=source or f"urn:prik:{tenant}",
        message_type="dk.prik.advisory.video-queue.v1",
        recipient=None,
        outcome=outcome,
        reason=None,
        now=SINCE,
    )
    assert out.value is not None
    return out.value


def tally(until: datetime | None = UNTIL) -> UsageTally:
    return UsageTally(TENANTS, SINCE, until)


def test_every_tenant_and_every_lps_appear_with_nothing_to_count() -> None:
    usage = tally().result()
    assert set(usage.senders) == {VIDEO, KOMMUNE, LPS, OTHER_LPS}
    assert set(usage.receivers) == {LPS, OTHER_LPS}
    assert usage.to_json() == {
        "since": "2026-11-26T09:00:00Z",
        "senders": {
            t: {"messages": 0, "bytes": 0, "delivered": 0, "expired": 0, "rejected": 0, "dead_lettered": 0}
            for t in (VIDEO, KOMMUNE, LPS, OTHER_LPS)
        },
        "receivers": {lps: {"delivered": 0, "dead_lettered": 0, "clinics": 0} for lps in (LPS, OTHER_LPS)},
        "peak": {"per_minute": 0, "at": None, "tenant": None},
    }


def test_messages_bytes_and_each_outcome_from_the_receipts() -> None:
    t = tally()
    delivered, expired, rejected, dead = notice(), notice(), notice(), notice(OTHER_CLINIC)
    values = {m.id: to_bytes(m) for m in (delivered, expired, rejected, dead)}
    for value in values.values():
        t.ingress(VIDEO, at(1), value)
    t.reply(VIDEO, lps_receipt(LPS, delivered, Outcome.DELIVERED))
    t.reply(VIDEO, by_router(VIDEO, expired.id, Outcome.EXPIRED))
    t.reply(VIDEO, by_router(VIDEO, rejected.id, Outcome.REJECTED))
    t.reply(VIDEO, lps_receipt(LPS, dead, Outcome.DEAD_LETTERED))
    row = t.result().senders[VIDEO]
    assert row.to_json() == {
        "messages": 4,
        "bytes": sum(len(v) for v in values.values()),
        "delivered": 1,
        "expired": 1,
        "rejected": 1,
        "dead_lettered": 1,
    }
    assert row.open == 0


def test_each_message_counts_once_with_the_furthest_outcome() -> None:
    t = tally()
    redelivered, resent, replayed = notice(), notice(), notice()
    for m in (redelivered, resent, replayed):
        t.ingress(VIDEO, at(1), to_bytes(m))
    # A consumer that crashed before committing delivers again and receipts again.
    t.reply(VIDEO, lps_receipt(LPS, redelivered, Outcome.DELIVERED))
    t.reply(VIDEO, lps_receipt(LPS, redelivered, Outcome.DELIVERED))
    # Refused (not in the directory yet), then re-sent with the same id and delivered:
    # two records, one message.
    t.ingress(VIDEO, at(2), to_bytes(resent))
    t.reply(VIDEO, by_router(VIDEO, resent.id, Outcome.REJECTED))
    t.reply(VIDEO, lps_receipt(LPS, resent, Outcome.DELIVERED))
    # Delivered, then a later copy dead-lettered: the clinic has it, whatever the order read.
    t.reply(VIDEO, lps_receipt(LPS, replayed, Outcome.DELIVERED))
    t.reply(VIDEO, lps_receipt(LPS, replayed, Outcome.DEAD_LETTERED))
    usage = t.result()
    row = usage.senders[VIDEO]
    assert (row.messages, row.delivered, row.rejected, row.dead_lettered, row.open) == (4, 3, 0, 0, 0)
    assert usage.receivers[LPS].delivered == 3
    assert usage.receivers[LPS].dead_lettered == 0


def test_outcomes_do_not_depend_on_the_order_records_are_read() -> None:
    messages = [notice() for _ in range(3)]
    outcomes = [Outcome.REJECTED, Outcome.DELIVERED, Outcome.DEAD_LETTERED]
    replies = [lps_receipt(LPS, messages[0], o) for o in outcomes]
    forward, backward = tally(), tally()
    for m in messages:
        forward.ingress(VIDEO, at(1), to_bytes(m))
    for value in replies:
        forward.reply(VIDEO, value)
    # Receipts read before their messages (replies and ingress are read side by side).
    for value in reversed(replies):
        backward.reply(VIDEO, value)
    for m in reversed(messages):
        backward.ingress(VIDEO, at(1), to_bytes(m))
    assert forward.result().to_json() == backward.result().to_json()
    assert forward.result().senders[VIDEO].delivered == 1
    assert forward.result().senders[VIDEO].open == 2


def test_an_unreadable_record_counts_for_its_topic_and_ends_rejected() -> None:
    t = tally()
    garbage = b'{"id": "x-1", "not": "a message"'
    claims_other = to_bytes(notice())  # on the municipality's topic, claiming the video platform
    t.ingress(KOMMUNE, at(1), garbage)
    t.ingress(KOMMUNE, at(1), None)  # no value at all
    t.ingress(KOMMUNE, at(1), claims_other)
    # The router's receipts: under the id it could peek, and for the false claim.
    t.reply(KOMMUNE, by_router(KOMMUNE, "x-1", Outcome.REJECTED))
    t.reply(KOMMUNE, by_router(KOMMUNE, notice().id, Outcome.REJECTED))
    claimed = parse_id(claims_other)
    t.reply(KOMMUNE, by_router(KOMMUNE, claimed, Outcome.REJECTED))
    usage = t.result()
    row = usage.senders[KOMMUNE]
    assert (row.messages, row.bytes) == (3, len(garbage) + len(claims_other))
    assert (row.rejected, row.delivered, row.open) == (3, 0, 0)
    assert usage.senders[VIDEO].messages == 0


def parse_id(value: bytes) -> str:
    return parse(value).id


def test_a_record_over_the_size_limit_is_rejected_unread() -> None:
    t = UsageTally(TENANTS, SINCE, UNTIL, max_message_bytes=1024)
    big = notice().model_copy(update={"subject": "x" * 200})
    value = to_bytes(big) + b" " * 1024
    t.ingress(VIDEO, at(1), value)
    assert t.result().senders[VIDEO].rejected == 1


def test_binary_mode_records_are_read_too() -> None:
    t = tally()
    message = notice()
    value, headers = to_binary(message)
    t.ingress(VIDEO, at(1), value, headers)
    t.reply(VIDEO, lps_receipt(LPS, message, Outcome.DELIVERED))
    assert t.result().senders[VIDEO].delivered == 1


def test_window_edges_since_inclusive_until_exclusive() -> None:
    t = tally()
    first, last, before, after = notice(), notice(), notice(), notice()
    assert t.ingress(VIDEO, ms(SINCE), to_bytes(first))
    assert t.ingress(VIDEO, ms(UNTIL) - 1, to_bytes(last))
    assert not t.ingress(VIDEO, ms(SINCE) - 1, to_bytes(before))
    assert not t.ingress(VIDEO, ms(UNTIL), to_bytes(after))
    # Receipts of messages outside the window do not count, whenever they came.
    for m in (first, last, before, after):
        t.reply(VIDEO, lps_receipt(LPS, m, Outcome.DELIVERED))
    usage = t.result()
    assert usage.senders[VIDEO].messages == 2
    assert usage.senders[VIDEO].delivered == 2
    assert usage.receivers[LPS].delivered == 2
    assert (usage.since, usage.until) == (SINCE, UNTIL)


def test_without_until_the_window_is_open_ended() -> None:
    t = tally(until=None)
    t.ingress(VIDEO, ms(SINCE + timedelta(days=3)), to_bytes(notice()))
    t.ingress(VIDEO, ms(SINCE) - 1, to_bytes(notice()))
    end = SINCE + timedelta(days=4)
    usage = t.result(until=end)
    assert usage.senders[VIDEO].messages == 1
    assert usage.until == end


def test_peak_is_the_busiest_minute_and_who_sent_most_in_it() -> None:
    t = tally()
    # Minute 5: 3 from the video platform, 2 from the municipality; minute 7: 4 from the municipality.
    for n in range(3):
        t.ingress(VIDEO, at(5, seconds=n), to_bytes(notice()))
    for n in range(2):
        t.ingress(KOMMUNE, at(5, seconds=59 - n), b"not json")
    for n in range(4):
        t.ingress(KOMMUNE, at(7, seconds=n * 10), b"not json")
    # A busy second spread over a minute boundary counts in each minute.
    t.ingress(VIDEO, at(9, seconds=59.9), b"x")
    t.ingress(VIDEO, at(10), b"x")
    peak = t.result().peak
    assert (peak.per_minute, peak.at, peak.tenant, peak.tenant_messages) == (
        5,
        SINCE + timedelta(minutes=5),
        VIDEO,
        3,
    )
    assert peak.to_json() == {"per_minute": 5, "at": "2026-11-26T09:05:00Z", "tenant": VIDEO}


def test_peak_ties_go_to_the_latest_minute_and_the_first_tenant_by_name() -> None:
    t = tally()
    t.ingress(VIDEO, at(1), b"x")
    t.ingress(KOMMUNE, at(1), b"x")
    t.ingress(VIDEO, at(2), b"x")
    t.ingress(KOMMUNE, at(2), b"x")
    peak = t.result().peak
    assert (peak.per_minute, peak.at, peak.tenant) == (2, SINCE + timedelta(minutes=2), KOMMUNE)


def test_peak_counts_only_the_window() -> None:
    t = tally()
    for _ in range(10):
        t.ingress(VIDEO, ms(SINCE) - 1, b"x")
    t.ingress(KOMMUNE, at(30), b"x")
    peak = t.result().peak
    assert (peak.per_minute, peak.tenant) == (1, KOMMUNE)


def test_receivers_count_what_each_lps_confirmed_and_how_many_clinics() -> None:
    t = tally()
    to_xmo = [notice(CLINIC), notice(CLINIC), notice(OTHER_CLINIC), notice(THIRD_CLINIC)]
    to_other = [notice(THIRD_CLINIC)]
    for m in (*to_xmo, *to_other):
        t.ingress(VIDEO, at(1), to_bytes(m))
    for m in to_xmo[:3]:
        t.reply(VIDEO, lps_receipt(LPS, m, Outcome.DELIVERED))
    t.reply(VIDEO, lps_receipt(LPS, to_xmo[3], Outcome.DEAD_LETTERED))
    t.reply(VIDEO, lps_receipt(OTHER_LPS, to_other[0], Outcome.EXPIRED))
    usage = t.result()
    assert usage.receivers[LPS].to_json() == {"delivered": 3, "dead_lettered": 1, "clinics": 2}
    # Expired at the consumer: neither delivered nor dead-lettered by the LPS.
    assert usage.receivers[OTHER_LPS].to_json() == {"delivered": 0, "dead_lettered": 0, "clinics": 0}
    assert usage.senders[VIDEO].expired == 1


def test_router_receipts_count_for_senders_but_no_receiver() -> None:
    t = tally()
    request = task_request(KOMMUNE, CLINIC, code="KOL-TELE")
    answer = task_status(LPS, request.data.task_id, "received")
    t.ingress(KOMMUNE, at(1), to_bytes(request))
    t.ingress(LPS, at(2), to_bytes(answer))
    t.reply(KOMMUNE, lps_receipt(LPS, request, Outcome.DELIVERED))
    # The router hands the LPS's task status to the requester itself and confirms it.
    t.reply(LPS, by_router(LPS, answer.id, Outcome.DELIVERED))
    # The forwarded status on the requester's replies topic is not a receipt.
    t.reply(KOMMUNE, to_bytes(answer))
    usage = t.result()
    assert usage.senders[KOMMUNE].delivered == 1
    assert usage.senders[LPS].delivered == 1
    assert usage.receivers[LPS].delivered == 1  # the task request only


def test_an_lps_receipt_is_a_message_of_its_own_without_a_receipt() -> None:
    t = tally()
    message = notice()
    receipt_value = lps_receipt(LPS, message, Outcome.DELIVERED)
    t.ingress(VIDEO, at(1), to_bytes(message))
    t.ingress(LPS, at(1, seconds=1), receipt_value)
    t.reply(VIDEO, receipt_value)
    usage = t.result()
    row = usage.senders[LPS]
    assert (row.messages, row.bytes, row.open, row.delivered) == (1, len(receipt_value), 0, 0)


def test_a_message_without_its_receipt_yet_is_open() -> None:
    t = tally()
    t.ingress(VIDEO, at(1), to_bytes(notice()))
    t.ingress(VIDEO, at(1), to_bytes(notice()))
    usage = t.result()
    assert usage.senders[VIDEO].open == 2
    assert usage.total.open == 2
    assert "open" not in usage.to_json()["senders"][VIDEO]


def test_result_can_be_taken_again_as_more_records_come() -> None:
    t = tally()
    message = notice()
    t.ingress(VIDEO, at(1), to_bytes(message))
    assert t.result().senders[VIDEO].open == 1
    t.reply(VIDEO, lps_receipt(LPS, message, Outcome.DELIVERED))
    again = t.result()
    assert (again.senders[VIDEO].open, again.senders[VIDEO].delivered) == (0, 1)


def test_load_alone_counts_messages_bytes_and_peak_without_reading_records() -> None:
    read, unread = tally(), tally()
    values = [to_bytes(notice()), b"not json", to_bytes(notice())]
    for n, value in enumerate(values):
        read.ingress(VIDEO, at(3, seconds=n), value)
        unread.load(VIDEO, at(3, seconds=n), len(value))
    assert not unread.load(VIDEO, ms(UNTIL), 10)
    full, light = read.result(), unread.result()
    assert (light.senders[VIDEO].messages, light.senders[VIDEO].bytes) == (3, sum(map(len, values)))
    assert light.peak == full.peak
    assert light.senders[VIDEO].rejected == 0  # nothing was read, so nothing is judged
    assert full.senders[VIDEO].rejected == 1


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        UsageTally(TENANTS, datetime(2026, 11, 26))  # noqa: DTZ001 - the point of the test


def rendered(usage: Usage) -> str:
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(usage_table(usage))
    return out.getvalue()


def test_the_table_has_every_party_units_and_no_patient_data() -> None:
    t = tally()
    message = notice()
    for n in range(3):
        t.ingress(VIDEO, at(4, seconds=n), to_bytes(notice()))
    t.ingress(VIDEO, at(5), to_bytes(message))
    t.reply(VIDEO, lps_receipt(LPS, message, Outcome.DELIVERED))
    usage = t.result()
    text = rendered(usage)
    for name in (VIDEO, KOMMUNE, LPS, OTHER_LPS, "total"):
        assert name in text
    assert "3 messages/min" in text
    assert "2026-11-26 09:04 UTC" in text
    assert " KiB " in text or " B " in text
    assert "(60 min)" in text
    assert CPR not in text
    assert CPR.encode() not in dumps(usage.to_json())


def test_the_table_says_when_nothing_was_sent() -> None:
    assert "no ingress traffic in the window" in rendered(tally().result())


@pytest.mark.parametrize(
    ("count", "shown"),
    [(0, "0 B"), (1023, "1,023 B"), (1536, "1.5 KiB"), (5 * 1024**2, "5.0 MiB"), (3 * 1024**4, "3.0 TiB")],
)
def test_human_bytes(count: int, shown: str) -> None:
    assert human_bytes(count) == shown


@pytest.mark.parametrize(
    ("span", "shown"),
    [
        (timedelta(seconds=90), "90 s"),
        (timedelta(minutes=15, milliseconds=300), "15 min"),
        (timedelta(hours=24, seconds=1), "24 h"),
        (timedelta(hours=2, minutes=30), "2.5 h"),
        (timedelta(days=7), "7 d"),
    ],
)
def test_human_duration(span: timedelta, shown: str) -> None:
    assert human_duration(span) == shown


NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "since"),
    [
        ("90s", NOW - timedelta(seconds=90)),
        ("15m", NOW - timedelta(minutes=15)),
        ("24h", NOW - timedelta(hours=24)),
        ("7d", NOW - timedelta(days=7)),
        ("1h30m", NOW - timedelta(minutes=90)),
        ("2026-11-26T09:00:00Z", datetime(2026, 11, 26, 9, 0, tzinfo=UTC)),
        ("2026-11-26T10:00:00+01:00", datetime(2026, 11, 26, 9, 0, tzinfo=UTC)),
    ],
)
def test_since_takes_durations_and_rfc3339(text: str, since: datetime) -> None:
    assert parse_since(text, NOW) == since


@pytest.mark.parametrize("text", ["", "24", "5x", "-1h", "0s", "2026-11-26T09:00:00", "2027-01-01T00:00:00Z"])
def test_since_refuses_anything_else_in_one_line(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_since(text, NOW)
    assert "\n" not in str(caught.value)
