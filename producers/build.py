"""Build prik messages the way a sender should: fresh id, current UTC time, the tenant's source.

Every builder raises `ParseError` (exit 1 on the command line) when the values
break a message rule; the reason names fields, never their values, so a CPR
typed into the wrong option does not end up in a terminal log.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from pydantic import ValidationError

from contracts import (
    Envelope,
    MessageType,
    Outcome,
    ParseError,
    Priority,
    Receipt,
    ReferralStatus,
    ReferralStatusNotice,
    TaskRequest,
    TaskStatus,
    TaskStatusUpdate,
    VideoQueueEvent,
    VideoQueueNotice,
    source_of,
)

__all__ = [
    "new_id",
    "receipt",
    "referral_status_notice",
    "task_request",
    "task_status",
    "utc_now",
    "video_queue_notice",
]

E = TypeVar("E", bound=Envelope)

_NUMBER_RUN_RE = re.compile(r"[0-9]{6}-?[0-9]{4}")


def new_id() -> str:
    """A fresh message id (UUID 4): unique per source, stable across retries once chosen."""
    return str(uuid.uuid4())


def utc_now() -> datetime:
    return datetime.now(UTC)


def _build(cls: type[E], fields: dict[str, Any]) -> E:
    try:
        return cls.model_validate(fields)
    except ValidationError as exc:
        parts = []
        for error in exc.errors(include_url=False, include_context=False, include_input=False):
            loc = ".".join(str(p) for p in error["loc"])
            parts.append(f"{loc}: {error['msg']}" if loc else error["msg"])
        # Belt and braces: no CPR-shaped digit run leaves a builder's error.
        raise ParseError(_NUMBER_RUN_RE.sub("<number>", "; ".join(parts))) from None


def _patient(cpr: str | None) -> dict[str, str] | None:
    return None if cpr is None else {"cpr": cpr}


def _envelope(
    tenant: str,
    *,
    recipient: str | None,
    expires_in: timedelta | None,
    priority: Priority | str,
    correlation_id: str | None,
    message_id: str | None,
    now: datetime,
) -> dict[str, Any]:
    return {
        "id": message_id or new_id(),
        "source": source_of(tenant),
        "time": now,
        "recipient": recipient,
        "expiresat": None if expires_in is None else now + expires_in,
        "priority": priority,
        "correlationid": correlation_id,
    }


def video_queue_notice(
    tenant: str,
    clinic: str,
    *,
    event: VideoQueueEvent | str,
    queue_entry_id: str,
    position: int | None = None,
    waiting_since: datetime | None = None,
    consultation_url: str | None = None,
    cpr: str | None = None,
    expires_in: timedelta | None = None,
    priority: Priority | str = Priority.NORMAL,
    correlation_id: str | None = None,
    message_id: str | None = None,
) -> VideoQueueNotice:
    """A video-queue advisory for clinic `clinic` (SOR). Without `expires_in` the router
    expires it 15 minutes after its time; `waiting_since` defaults to now."""
    now = utc_now()
    fields = _envelope(
        tenant,
        recipient=clinic,
        expires_in=expires_in,
        priority=priority,
        correlation_id=correlation_id,
        message_id=message_id,
        now=now,
    )
    fields["data"] = {
        "queue_entry_id": queue_entry_id,
        "event": event,
        "patient": _patient(cpr),
        "position": position,
        "waiting_since": waiting_since or now,
        "consultation_url": consultation_url,
    }
    return _build(VideoQueueNotice, fields)


def referral_status_notice(
    tenant: str,
    clinic: str,
    *,
    referral_id: str,
    municipality_code: str,
    offer: str,
    status: ReferralStatus | str,
    cpr: str,
    reason: str | None = None,
    expires_in: timedelta | None = None,
    priority: Priority | str = Priority.NORMAL,
    correlation_id: str | None = None,
    message_id: str | None = None,
) -> ReferralStatusNotice:
    """A municipality's referral-status advisory (e.g. TeleKOL accepted) for clinic `clinic`."""
    fields = _envelope(
        tenant,
        recipient=clinic,
        expires_in=expires_in,
        priority=priority,
        correlation_id=correlation_id,
        message_id=message_id,
        now=utc_now(),
    )
    fields["data"] = {
        "referral_id": referral_id,
        "municipality_code": municipality_code,
        "offer": offer,
        "status": status,
        "reason": reason,
        "patient": _patient(cpr),
    }
    return _build(ReferralStatusNotice, fields)


def task_request(
    tenant: str,
    clinic: str,
    *,
    code: str,
    description: str | None = None,
    cpr: str | None = None,
    due: datetime | None = None,
    task_id: UUID | str | None = None,
    expires_in: timedelta | None = None,
    priority: Priority | str = Priority.NORMAL,
    correlation_id: str | None = None,
    message_id: str | None = None,
) -> TaskRequest:
    """A task for clinic `clinic`; a fresh task id (UUID 4) unless `task_id` is given."""
    fields = _envelope(
        tenant,
        recipient=clinic,
        expires_in=expires_in,
        priority=priority,
        correlation_id=correlation_id,
        message_id=message_id,
        now=utc_now(),
    )
    fields["data"] = {
        "task_id": task_id or uuid.uuid4(),
        "code": code,
        "description": description,
        "patient": _patient(cpr),
        "due": due,
    }
    return _build(TaskRequest, fields)


def task_status(
    tenant: str,
    task_id: UUID | str,
    status: TaskStatus | str,
    reason: str | None = None,
    business_status: str | None = None,
    *,
    correlation_id: str | None = None,
    message_id: str | None = None,
) -> TaskStatusUpdate:
    """A new status of task `task_id`: from the LPS, or `cancelled` from the requester.
    The router routes it from the task's recorded state, so it names no recipient."""
    fields = _envelope(
        tenant,
        recipient=None,
        expires_in=None,
        priority=Priority.NORMAL,
        correlation_id=correlation_id,
        message_id=message_id,
        now=utc_now(),
    )
    fields["data"] = {
        "task_id": task_id,
        "status": status,
        "reason": reason,
        "business_status": business_status,
    }
    return _build(TaskStatusUpdate, fields)


def receipt(
    tenant: str,
    *,
    message_id: str,
    message_source: str,
    message_type: MessageType | str,
    outcome: Outcome | str,
    recipient: str | None = None,
    reason: str | None = None,
    attempts: int = 1,
    at: datetime | None = None,
    receipt_id: str | None = None,
) -> Receipt:
    """An LPS's receipt for message `message_id`; the router forwards it to `message_source`'s tenant."""
    now = utc_now()
    fields = _envelope(
        tenant,
        recipient=None,
        expires_in=None,
        priority=Priority.NORMAL,
        correlation_id=message_id,
        message_id=receipt_id,
        now=now,
    )
    fields["data"] = {
        "message_id": message_id,
        "message_source": message_source,
        "message_type": message_type,
        "recipient": recipient,
        "outcome": outcome,
        "reason": reason,
        "attempts": attempts,
        "at": at or now,
    }
    return _build(Receipt, fields)
