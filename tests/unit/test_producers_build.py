"""Message builders and the CLI helpers around them: durations, due times, reply lines."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from contracts import ConfigError, ParseError, Priority, VideoQueueNotice, parse, to_bytes
from prik.cli.send import format_reply, parse_due, parse_duration
from producers import receipt, referral_status_notice, task_request, task_status, video_queue_notice

SOR = "123456789012345"
CPR = "0101901234"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        (" 2H ", timedelta(hours=2)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "15", "15x", "m", "-5m", "1.5h", "0s", "15m2h"])
def test_bad_durations_are_config_errors_that_say_how(text: str) -> None:
    with pytest.raises(ConfigError, match=r"duration"):
        parse_duration(text)


def test_due_is_a_duration_from_now_or_an_aware_time() -> None:
    before = datetime.now(UTC)
    assert before + timedelta(days=2) <= parse_due("2d") <= datetime.now(UTC) + timedelta(days=2)
    assert parse_due("2026-12-01T12:00:00Z") == datetime(2026, 12, 1, 12, tzinfo=UTC)
    with pytest.raises(ConfigError, match="RFC 3339"):
        parse_due("2026-12-01T12:00:00")


def test_builders_stamp_id_time_and_source() -> None:
    before = datetime.now(UTC)
    notice = video_queue_notice(
        "minlaege-video",
        SOR,
        event="joined",
        queue_entry_id="q-1",
        position=2,
        cpr=CPR,
        consultation_url="https://video.example.dk/r/1",
        expires_in=timedelta(minutes=5),
        priority="urgent",
    )
    assert isinstance(notice, VideoQueueNotice)
    assert uuid.UUID(notice.id).version == 4
    assert notice.source == "urn:prik:minlaege-video"
    assert before <= notice.time <= datetime.now(UTC)
    assert notice.expiresat == notice.time + timedelta(minutes=5)
    assert notice.data.waiting_since == notice.time
    assert notice.priority is Priority.URGENT
    assert parse(to_bytes(notice)) == notice
    assert video_queue_notice("minlaege-video", SOR, event="left", queue_entry_id="q-1").id != notice.id


def test_task_request_gets_a_fresh_task_id_unless_given() -> None:
    first = task_request("kommune-0101", SOR, code="c")
    second = task_request("kommune-0101", SOR, code="c")
    assert first.data.task_id != second.data.task_id
    given = uuid.uuid4()
    assert task_request("kommune-0101", SOR, code="c", task_id=given).data.task_id == given


def test_invalid_values_raise_parse_error_naming_fields_never_values() -> None:
    with pytest.raises(ParseError) as caught:
        referral_status_notice(
            "kommune-0101",
            "0101901234",  # a CPR where the SOR belongs
            referral_id="r",
            municipality_code="999",
            offer="TeleKOL",
            status="accepted",
            cpr="3213213213",
        )
    reason = caught.value.reason
    assert "recipient" in reason
    assert "municipality_code" in reason
    assert "patient.cpr" in reason
    assert "0101901234" not in reason
    assert "3213213213" not in reason


def test_bad_tenant_id_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        task_status("Not A Tenant", uuid.uuid4(), "received")


def test_reply_lines_show_outcomes_and_statuses_but_never_cpr() -> None:
    notice = video_queue_notice("minlaege-video", SOR, event="joined", queue_entry_id="q-1", cpr=CPR)
    answer = receipt(
        "lps-xmo",
        message_id=notice.id,
        message_source=notice.source,
        message_type=notice.type,
        outcome="dead-lettered",
        reason=f"clinic said patient {CPR} unknown",
    )
    line = format_reply(answer)
    assert f"message_id={notice.id}" in line
    assert "outcome=dead-lettered" in line
    assert CPR not in line
    status = task_status("lps-xmo", uuid.uuid4(), "in-progress")
    assert f"task_id={status.data.task_id} status=in-progress" in format_reply(status)
    assert CPR not in format_reply(notice)
