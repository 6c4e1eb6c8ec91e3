"""The `data` of each message type, and the enums they use."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, ClassVar, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StringConstraints
from pydantic_core import PydanticCustomError

from contracts.identifiers import (
    STRICT_MODEL_CONFIG,
    HttpsUrl,
    Kommunekode,
    Patient,
    Sor,
    UtcDatetime,
    contains_cpr,
    is_cpr,
)
from contracts.tasks import TaskStatus

# Ids become Kafka keys, headers and webhook-id: visible ASCII only, no spaces.
ID_PATTERN = r"^[!-~]+$"
ID_MAX_CHARS = 200
TEXT_MAX_CHARS = 1000
DESCRIPTION_MAX_CHARS = 4000
SOURCE_PATTERN = r"^urn:prik:[a-z0-9][a-z0-9-]{1,62}$"
SOURCE_RE = re.compile(SOURCE_PATTERN)


class MessageType(StrEnum):
    """The CloudEvents `type` of every v1 message."""

    VIDEO_QUEUE = "dk.prik.advisory.video-queue.v1"
    REFERRAL_STATUS = "dk.prik.advisory.referral-status.v1"
    TASK_REQUEST = "dk.prik.task.request.v1"
    TASK_STATUS = "dk.prik.task.status.v1"
    RECEIPT = "dk.prik.receipt.v1"


MessageKind = Literal["advisory", "task", "platform"]

_KINDS: dict[MessageType, MessageKind] = {
    MessageType.VIDEO_QUEUE: "advisory",
    MessageType.REFERRAL_STATUS: "advisory",
    MessageType.TASK_REQUEST: "task",
    MessageType.TASK_STATUS: "task",
    MessageType.RECEIPT: "platform",
}


def kind_of(type_: MessageType | str) -> MessageKind:
    """The kind of a message type; an unknown type string raises ValueError."""
    return _KINDS[MessageType(type_)]


class Priority(StrEnum):
    """How urgently a clinic should see a message."""

    NORMAL = "normal"
    URGENT = "urgent"


class VideoQueueEvent(StrEnum):
    """What happened in a clinic's video queue."""

    JOINED = "joined"
    LEFT = "left"
    CALLED = "called"


class ReferralStatus(StrEnum):
    """Where a municipal referral (e.g. TeleKOL) stands."""

    RECEIVED = "received"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    STARTED = "started"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class Outcome(StrEnum):
    """The one final outcome of every message, reported in its receipt."""

    DELIVERED = "delivered"
    EXPIRED = "expired"
    REJECTED = "rejected"
    DEAD_LETTERED = "dead-lettered"


# Ids, correlation ids and subjects reach keys, headers and logs; CPR lives only in data.
# Ids are only refused when they *are* a CPR: a substring test would refuse about one
# random UUID in a few thousand ("…ab010190-1234-…"). Subjects are prose, so any CPR-shaped run counts.


def _not_a_cpr(value: str) -> str:
    if is_cpr(value):
        kind = "cpr_outside_data"
        raise PydanticCustomError(kind, "must not be a CPR number")
    return value


def no_cpr(value: str) -> str:
    """A pydantic validator: refuse text holding anything shaped like a CPR number."""
    if contains_cpr(value):
        kind = "cpr_outside_data"
        raise PydanticCustomError(kind, "must not contain a CPR number")
    return value


MessageId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=ID_MAX_CHARS, pattern=ID_PATTERN),
    AfterValidator(_not_a_cpr),
]
"""A message id, unique per source: the dedup key and webhook-id."""

Source = Annotated[str, StringConstraints(pattern=SOURCE_PATTERN)]
"""A CloudEvents source: `urn:prik:<tenant-id>` or `urn:prik:router`."""

Subject = Annotated[
    str,
    StringConstraints(min_length=1, max_length=ID_MAX_CHARS, pattern=r"^[^\x00-\x1f\x7f]+$"),
    AfterValidator(no_cpr),
]


def _valid_traceparent(value: str) -> str:
    version, trace_id, parent_id, _flags = value.split("-")
    if version == "ff" or trace_id == "0" * 32 or parent_id == "0" * 16:
        kind = "traceparent"
        raise PydanticCustomError(kind, "traceparent: invalid version or all-zero id")
    return value


# W3C Trace Context: version-traceid-parentid-flags, lower-case hex.
TraceParent = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"),
    AfterValidator(_valid_traceparent),
]
"""The CloudEvents distributed-tracing extension `traceparent`."""

TraceState = Annotated[str, StringConstraints(max_length=512, pattern=r"^[ -~]*$"), AfterValidator(no_cpr)]
"""The CloudEvents distributed-tracing extension `tracestate` (W3C, at most 512 characters)."""

PartitionKey = Annotated[
    str, StringConstraints(min_length=1, max_length=ID_MAX_CHARS, pattern=ID_PATTERN), AfterValidator(no_cpr)
]
"""The CloudEvents partitioning extension `partitionkey`; it may become a Kafka key, so no CPR."""

Reference = Annotated[str, StringConstraints(min_length=1, max_length=ID_MAX_CHARS, pattern=ID_PATTERN)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=TEXT_MAX_CHARS)]
Description = Annotated[str, StringConstraints(min_length=1, max_length=DESCRIPTION_MAX_CHARS)]


class _Data(BaseModel):
    model_config: ClassVar[ConfigDict] = STRICT_MODEL_CONFIG


class VideoQueueData(_Data):
    """A change in a clinic's video-consultation queue."""

    queue_entry_id: Reference
    event: VideoQueueEvent
    patient: Patient | None = None
    position: Annotated[StrictInt, Field(ge=1)] | None = None
    waiting_since: UtcDatetime
    consultation_url: HttpsUrl | None = None


class ReferralStatusData(_Data):
    """A municipality's news about a referral."""

    referral_id: Reference
    municipality_code: Kommunekode
    offer: Text
    status: ReferralStatus
    reason: Text | None = None
    patient: Patient


class TaskRequestData(_Data):
    """A task handed to a clinic (opgaverekvisition)."""

    task_id: UUID
    code: Reference
    description: Description | None = None
    patient: Patient | None = None
    due: UtcDatetime | None = None


class TaskStatusData(_Data):
    """A new status of a task, from the clinic (or `cancelled` from the requester)."""

    task_id: UUID
    status: TaskStatus
    reason: Text | None = None
    business_status: Text | None = None


class ReceiptData(_Data):
    """The final outcome of one message, for its sender."""

    message_id: MessageId
    message_source: Source
    # Not the enum: a receipt must also describe a refused message of an unknown type.
    message_type: Reference
    recipient: Sor | None = None
    outcome: Outcome
    reason: Text | None = None
    attempts: Annotated[StrictInt, Field(ge=0)]
    at: UtcDatetime
