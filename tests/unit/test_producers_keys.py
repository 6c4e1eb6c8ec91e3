"""Keying rules of DESIGN.md: recipient SOR, task id, or the receipted message's id."""

from __future__ import annotations

from contracts import Message, MessageType, contains_cpr, example_messages
from producers import key_of, receipt, referral_status_notice, task_request, task_status, video_queue_notice

SOR = "123456789012345"
CPR = "0101901234"


def test_advisories_and_task_requests_are_keyed_by_recipient_sor() -> None:
    messages: list[Message] = [
        video_queue_notice("minlaege-video", SOR, event="joined", queue_entry_id="q-1", cpr=CPR),
        referral_status_notice(
            "kommune-0101",
            SOR,
            referral_id="r-1",
            municipality_code="101",
            offer="TeleKOL",
            status="accepted",
            cpr=CPR,
        ),
        task_request("kommune-0101", SOR, code="medication-review", cpr=CPR),
    ]
    assert [key_of(m) for m in messages] == [SOR, SOR, SOR]


def test_task_status_is_keyed_by_task_id() -> None:
    request = task_request("kommune-0101", SOR, code="c")
    status = task_status("lps-xmo", request.data.task_id, "received")
    assert key_of(status) == str(request.data.task_id)


def test_receipt_is_keyed_by_the_receipted_message_id() -> None:
    notice = video_queue_notice("minlaege-video", SOR, event="left", queue_entry_id="q-1")
    answer = receipt(
        "lps-xmo",
        message_id=notice.id,
        message_source=notice.source,
        message_type=notice.type,
        outcome="delivered",
        recipient=SOR,
    )
    assert key_of(answer) == notice.id


def test_no_key_of_any_example_carries_a_cpr() -> None:
    for message in example_messages().values():
        assert not contains_cpr(key_of(message))
    assert key_of(example_messages()[MessageType.RECEIPT]) == example_messages()[MessageType.VIDEO_QUEUE].id
