"""The messages an LPS's consumer writes on its ingress topic: receipts and task statuses.

Built with the sender SDK's builders (`producers.build`), so every party builds
receipts and task statuses the same way.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import UTC, datetime

from pydantic import TypeAdapter, ValidationError

from contracts import Message, Outcome, Receipt, Sor, TaskStatus, TaskStatusUpdate, to_bytes
from contracts.errors import cap_reason
from contracts.identifiers import SOR_PATTERN
from contracts.limits import MAX_YEAR, MIN_YEAR
from contracts.messages import TEXT_MAX_CHARS
from contracts.topics import source_of
from producers import receipt, task_status

from .errors import TaskAnswerRefused

__all__ = ["ReceiptWriter", "as_sor", "build_receipt", "build_task_status", "receipt_id", "task_answer"]

# A fixed namespace makes receipt ids a pure function of (lps, sender, message id).
_RECEIPT_NAMESPACE = uuid.UUID("5b0f3c2e-6a0d-4a63-9f55-6c1d0f1a7e21")
_NAMESPACE_BYTES = _RECEIPT_NAMESPACE.bytes
_SOR = TypeAdapter(Sor)
# The contract's own SOR pattern; fullmatch, so no trailing newline slips through `$`.
_SOR_RE = re.compile(SOR_PATTERN)


def receipt_id(lps: str, message: Message) -> str:
    """The receipt's id, the same every time this LPS finishes this message.

    A consumer that crashes after publishing a receipt but before committing
    publishes it again on redelivery; the same id lets the router drop the
    second one, so the sender still sees exactly one receipt.
    """
    # uuid.uuid5, spelled out: the same string without building a UUID object (its checks
    # and formatting were ~9 % of the clinic consumer's CPU in py-spy under `prik bench consumer`).
    name = f"{lps}|{message.source}|{message.id}".encode()
    return _uuid_text(hashlib.sha1(_NAMESPACE_BYTES + name, usedforsecurity=False).digest())


# The hex digit of byte 8's high nibble with the RFC 4122 variant bits (10xx) set.
_VARIANT = {digit: "89ab"[int(digit, 16) & 0x3] for digit in "0123456789abcdef"}


def _uuid_text(digest: bytes) -> str:
    """The UUID 5 text of a SHA-1 digest's first 16 bytes, as `uuid.uuid5` writes it.

    On the hex text: the version nibble (13th digit) is 5, the variant's digit 8-b.
    """
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


class ReceiptWriter:
    """One LPS's receipts as record values: `to_bytes(build_receipt(...))`, byte for byte.

    A receipt of a message delivered (no reason) is written straight from the message's
    validated fields: building and validating the pydantic model, then serialising it,
    was ~26 µs of the clinic consumer's ~120 µs per message under `prik bench consumer`.
    Anything else (a reason, a message id with a quote or backslash that JSON escapes)
    takes the builder. tests/unit/test_consumers_receipt_bytes.py holds the two equal.
    """

    __slots__ = ("_head", "_ids", "_lps")

    def __init__(self, lps: str) -> None:
        self._lps = lps
        # The receipt id's hash with the namespace and `<lps>|` already fed in.
        self._ids = hashlib.sha1(_NAMESPACE_BYTES + f"{lps}|".encode(), usedforsecurity=False)
        self._head = '","source":"' + source_of(lps) + '","type":"dk.prik.receipt.v1","time":"'

    def receipt_id(self, message: Message) -> str:
        """`receipt_id(lps, message)`, from the hash state kept for this LPS."""
        digest = self._ids.copy()
        digest.update(f"{message.source}|{message.id}".encode())
        return _uuid_text(digest.digest())

    def value(
        self,
        message: Message,
        outcome: Outcome,
        *,
        recipient: str | None,
        attempts: int,
        reason: str | None,
        at: datetime,
    ) -> bytes:
        """The receipt's record value; `at` (aware, UTC) is both its `time` and `data.at`."""
        message_id = message.id
        plain = '"' not in message_id and "\\" not in message_id
        fits = (
            at.tzinfo is UTC and MIN_YEAR <= at.year <= MAX_YEAR and type(attempts) is int and attempts >= 0
        )
        if reason is None and plain and fits:
            if recipient is None or not _SOR_RE.fullmatch(recipient):
                recipient = message.recipient
            # Validated fields: ids printable ASCII (quote and backslash excluded above), sources
            # `urn:prik:<tenant>`, types references, recipients SOR digits; so none needs escaping.
            # An Outcome (a StrEnum) formats as its value.
            time = at.isoformat()[:-6] + "Z"  # UTC: "+00:00" is the tail pydantic writes as "Z"
            to = "" if recipient is None else f'"recipient":"{recipient}",'
            return (
                f'{{"specversion":"1.0","id":"{self.receipt_id(message)}{self._head}{time}",'
                f'"datacontenttype":"application/json","correlationid":"{message_id}","priority":"normal",'
                f'"data":{{"message_id":"{message_id}","message_source":"{message.source}",'
                f'"message_type":"{message.type}",{to}"outcome":"{outcome}",'
                f'"attempts":{attempts},"at":"{time}"}}}}'
            ).encode()
        receipt = build_receipt(
            self._lps, message, outcome, recipient=recipient, attempts=attempts, reason=reason, at=at
        )
        return to_bytes(receipt)


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
