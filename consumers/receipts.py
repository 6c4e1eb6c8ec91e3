"""The messages an LPS's consumer writes on its ingress topic: receipts and task statuses.

Built with the sender SDK's builders (`producers.build`), so every party builds
receipts and task statuses the same way.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

from pydantic import TypeAdapter, ValidationError

from contracts import Message, Outcome, Receipt, Sor, TaskStatus, TaskStatusUpdate
from contracts.errors import cap_reason
from contracts.messages import TEXT_MAX_CHARS
from producers import receipt, task_status

from .errors import TaskAnswerRefused

__all__ = ["as_sor", "build_receipt", "build_task_status", "receipt_id", "task_answer"]

# A fixed namespace makes receipt ids a pure function of (lps, sender, message id).
_RECEIPT_NAMESPACE = uuid.UUID("5b0f3c2e-6a0d-4a63-9f55-6c1d0f1a7e21")
_NAMESPACE_BYTES = _RECEIPT_NAMESPACE.bytes
_SOR = TypeAdapter(Sor)


def receipt_id(lps: str, message: Message) -> str:
    """The receipt's id, the same every time this LPS finishes this message.

    A consumer that crashes after publishing a receipt but before committing
    publishes it again on redelivery; the same id lets the router drop the
    second one, so the sender still sees exactly one receipt.
    """
    # uuid.uuid5, spelled out: the same string without building a UUID object (its checks
    # and formatting were ~9 % of the clinic consumer's CPU in py-spy under `prik bench consumer`).
    name = f"{lps}|{message.source}|{message.id}".encode()
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + name, usedforsecurity=False).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def as_sor(value: str | None) -> str | None:
    """`value` if it is a SOR code, else None (a receipt's recipient must be one or absent)."""
    if value is None:
        return None
    try:
        return _SOR.validate_python(value)
    except ValidationError:
        return None


def build_receipt(
    lps: str,
    message: Message,
    outcome: Outcome,
    *,
    recipient: str | None,
    attempts: int,
    reason: str | None = None,
    at: datetime | None = None,
) -> Receipt:
    """The `dk.prik.receipt.v1` telling `message`'s sender its final outcome at this LPS."""
    return receipt(
        lps,
        message_id=message.id,
        message_source=message.source,
        message_type=message.type,
        outcome=outcome,
        recipient=as_sor(recipient) or message.recipient,
        reason=cap_reason(reason, TEXT_MAX_CHARS) if reason else None,
        attempts=attempts,
        at=at,
        receipt_id=receipt_id(lps, message),
    )


def build_task_status(
    lps: str,
    task_id: uuid.UUID,
    status: TaskStatus,
    *,
    reason: str | None = None,
    business_status: str | None = None,
) -> TaskStatusUpdate:
    """A clinic's answer to a task, as this LPS publishes it (the router routes it by task state)."""
    return task_status(lps, task_id, status, reason, business_status)


def task_answer(
    lps: str,
    task_id: uuid.UUID | str,
    status: TaskStatus | str,
    reason: str | None,
    business_status: str | None,
) -> TaskStatusUpdate:
    """An LPS's answer to a task, checked: `TaskAnswerRefused` for what the contract refuses."""
    try:
        parsed_id = task_id if isinstance(task_id, uuid.UUID) else uuid.UUID(str(task_id))
    except ValueError:
        msg = "task id is not a UUID"
        raise TaskAnswerRefused(msg) from None
    try:
        parsed_status = TaskStatus(status)
    except ValueError:
        allowed = ", ".join(s.value for s in TaskStatus)
        msg = f"status must be one of: {allowed}"
        raise TaskAnswerRefused(msg) from None
    if parsed_status in {TaskStatus.REQUESTED, TaskStatus.CANCELLED}:
        msg = f"an LPS may not set status {parsed_status.value}"
        raise TaskAnswerRefused(msg)
    try:
        return build_task_status(
            lps, parsed_id, parsed_status, reason=reason, business_status=business_status
        )
    except ValueError:  # pydantic's ValidationError: a reason too long or empty
        msg = "reason and business_status must be 1-1000 characters"
        raise TaskAnswerRefused(msg) from None
