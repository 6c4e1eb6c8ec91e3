"""One valid message of every type, built in code, for tests, the CLI and the demo.

The CPR numbers are made-up examples with valid dates; none passes modulus 11.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from contracts.envelope import (
    Message,
    Receipt,
    ReferralStatusNotice,
    TaskRequest,
    TaskStatusUpdate,
    VideoQueueNotice,
)
from contracts.identifiers import Cpr, Patient
from contracts.messages import (
    MessageType,
    Outcome,
    Priority,
    ReceiptData,
    ReferralStatus,
    ReferralStatusData,
    TaskRequestData,
    TaskStatusData,
    VideoQueueData,
    VideoQueueEvent,
)
from contracts.tasks import TaskStatus

EXAMPLE_CLINIC_SOR = "123456789012345"
EXAMPLE_TASK_ID = UUID("3b0f7c2e-6a51-4d0e-9c1a-0d6f2b7e4a11")
EXAMPLE_TIME = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
EXAMPLE_CPR = "0101901234"


def example_messages() -> dict[MessageType, Message]:
    """A fresh, valid example of each message type."""
    patient = Patient(cpr=Cpr(EXAMPLE_CPR))
    video = VideoQueueNotice(
        id="7d1c6f6e-2f0e-4a6e-9b1d-3f0e1c2a9b10",
        source="urn:prik:minlaege-video",
        time=EXAMPLE_TIME,
        recipient=EXAMPLE_CLINIC_SOR,
        expiresat=EXAMPLE_TIME + timedelta(minutes=15),
        data=VideoQueueData(
            queue_entry_id="q-4711",
            event=VideoQueueEvent.JOINED,
            patient=patient,
            position=3,
            waiting_since=EXAMPLE_TIME - timedelta(minutes=2),
            consultation_url="https://video.example.dk/room/4711",
        ),
    )
    referral = ReferralStatusNotice(
        id="c2a5e0de-41e4-4d3a-8f5e-7b9e1e2d3c40",
        source="urn:prik:kommune-0101",
        time=EXAMPLE_TIME,
        recipient=EXAMPLE_CLINIC_SOR,
        data=ReferralStatusData(
            referral_id="ref-2026-0042",
            municipality_code="101",
            offer="TeleKOL",
            status=ReferralStatus.ACCEPTED,
            patient=patient,
        ),
    )
    request = TaskRequest(
        id="9e8d7c6b-5a49-4f38-8e27-1d0c9b8a7f65",
        source="urn:prik:kommune-0101",
        time=EXAMPLE_TIME,
        recipient=EXAMPLE_CLINIC_SOR,
        priority=Priority.URGENT,
        data=TaskRequestData(
            task_id=EXAMPLE_TASK_ID,
            code="medication-review",
            description="Please review the patient's medication before discharge.",
            patient=patient,
            due=EXAMPLE_TIME + timedelta(days=2),
        ),
    )
    status = TaskStatusUpdate(
        id="1f2e3d4c-5b6a-4789-9abc-def012345678",
        source="urn:prik:lps-xmo",
        time=EXAMPLE_TIME + timedelta(hours=1),
        correlationid="9e8d7c6b-5a49-4f38-8e27-1d0c9b8a7f65",
        data=TaskStatusData(task_id=EXAMPLE_TASK_ID, status=TaskStatus.RECEIVED),
    )
    receipt = Receipt(
        id="5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d",
        source="urn:prik:router",
        time=EXAMPLE_TIME + timedelta(seconds=2),
        correlationid=video.id,
        data=ReceiptData(
            message_id=video.id,
            message_source=video.source,
            message_type=video.type,
            recipient=EXAMPLE_CLINIC_SOR,
            outcome=Outcome.DELIVERED,
            attempts=1,
            at=EXAMPLE_TIME + timedelta(seconds=1),
        ),
    )
    return {
        MessageType.VIDEO_QUEUE: video,
        MessageType.REFERRAL_STATUS: referral,
        MessageType.TASK_REQUEST: request,
        MessageType.TASK_STATUS: status,
        MessageType.RECEIPT: receipt,
    }
