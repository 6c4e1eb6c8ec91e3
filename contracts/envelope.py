"""The CloudEvents 1.0 envelope and one envelope class per message type."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Annotated, ClassVar, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from contracts.identifiers import STRICT_MODEL_CONFIG, Sor, UtcDatetime
from contracts.messages import (
    MessageId,
    MessageType,
    PartitionKey,
    Priority,
    ReceiptData,
    ReferralStatusData,
    Source,
    Subject,
    TaskRequestData,
    TaskStatusData,
    TraceParent,
    TraceState,
    VideoQueueData,
    no_cpr,
)

DEFAULT_DATACONTENTTYPE = "application/json"
VIDEO_QUEUE_DEFAULT_TTL = timedelta(minutes=15)

# `data` is always JSON here; parameters such as charset are tolerated.
DataContentType = Annotated[
    str,
    StringConstraints(pattern=r"^application/json(\s*;[ -~]*)?$", max_length=100),
    # It becomes the content-type header in binary mode: no patient data in its parameters.
    AfterValidator(no_cpr),
]


class Envelope(BaseModel):
    """Attributes shared by every prik message (CloudEvents 1.0 plus prik extensions)."""

    model_config: ClassVar[ConfigDict] = STRICT_MODEL_CONFIG
    # Advisories and task requests name their clinic; statuses and receipts are routed by state.
    RECIPIENT_REQUIRED: ClassVar[bool] = False

    specversion: Literal["1.0"] = "1.0"
    id: MessageId
    source: Source
    type: str
    time: UtcDatetime
    datacontenttype: DataContentType = DEFAULT_DATACONTENTTYPE
    recipient: Sor | None = None
    expiresat: UtcDatetime | None = None
    correlationid: MessageId | None = None
    priority: Priority = Priority.NORMAL
    subject: Subject | None = None
    # The documented CloudEvents extensions prik carries to the LPS; any other is refused.
    traceparent: TraceParent | None = None
    tracestate: TraceState | None = None
    partitionkey: PartitionKey | None = None
    data: BaseModel


class _Addressed(Envelope):
    """An envelope that must name its clinic; statuses and receipts skip this check's Python call."""

    RECIPIENT_REQUIRED: ClassVar[bool] = True

    @model_validator(mode="after")
    def _recipient_when_required(self) -> Self:
        if self.recipient is None:
            kind = "recipient_required"
            raise PydanticCustomError(kind, "recipient is required for advisories and task requests")
        return self


class VideoQueueNotice(_Addressed):
    """Advisory: a patient joined, left or was called in a clinic's video queue."""

    type: Literal["dk.prik.advisory.video-queue.v1"] = "dk.prik.advisory.video-queue.v1"
    data: VideoQueueData


class ReferralStatusNotice(_Addressed):
    """Advisory: a municipality's news about a referral."""

    type: Literal["dk.prik.advisory.referral-status.v1"] = "dk.prik.advisory.referral-status.v1"
    data: ReferralStatusData


class TaskRequest(_Addressed):
    """Task: a requester hands a clinic a task."""

    type: Literal["dk.prik.task.request.v1"] = "dk.prik.task.request.v1"
    data: TaskRequestData


class TaskStatusUpdate(Envelope):
    """Task: a new status of a task."""

    type: Literal["dk.prik.task.status.v1"] = "dk.prik.task.status.v1"
    data: TaskStatusData


class Receipt(Envelope):
    """Platform: the final outcome of one message, for its sender."""

    type: Literal["dk.prik.receipt.v1"] = "dk.prik.receipt.v1"
    data: ReceiptData


Message = Annotated[
    VideoQueueNotice | ReferralStatusNotice | TaskRequest | TaskStatusUpdate | Receipt,
    Field(discriminator="type"),
]
"""Any prik message, discriminated on `type`."""

MESSAGE_CLASSES: Mapping[MessageType, type[Envelope]] = MappingProxyType(
    {
        MessageType.VIDEO_QUEUE: VideoQueueNotice,
        MessageType.REFERRAL_STATUS: ReferralStatusNotice,
        MessageType.TASK_REQUEST: TaskRequest,
        MessageType.TASK_STATUS: TaskStatusUpdate,
        MessageType.RECEIPT: Receipt,
    }
)


def effective_expiry(msg: Envelope) -> datetime | None:
    """When `msg` stops being deliverable.

    Its `expiresat`, else, for a video-queue notice, 15 minutes after its `time`.
    """
    if msg.expiresat is not None:
        return msg.expiresat
    if isinstance(msg, VideoQueueNotice):
        return msg.time + VIDEO_QUEUE_DEFAULT_TTL
    return None


def is_expired(msg: Envelope, now: datetime) -> bool:
    """Whether `msg` must no longer be delivered at `now` (an aware date-time)."""
    if now.tzinfo is None or now.utcoffset() is None:
        problem = "now must be an aware date-time"
        raise ValueError(problem)
    expiry = effective_expiry(msg)
    return expiry is not None and now >= expiry
