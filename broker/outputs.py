"""The router's own records: dead letters and receipts."""

from __future__ import annotations

import uuid
from datetime import datetime

from contracts import (
    ROUTER_SOURCE,
    STRUCTURED_CONTENT_TYPE,
    ErrorStage,
    Outcome,
    Receipt,
    ReceiptData,
    Topics,
    to_bytes,
)
from contracts import headers as h
from contracts.errors import cap_reason

from .records import Incoming, Outgoing

__all__ = ["dead_letter", "receipt"]


def dead_letter(topics: Topics, rec: Incoming, stage: ErrorStage | str, reason: str) -> Outgoing:
    """The original bytes and key, with where and why it failed in headers."""
    ours = {h.ERROR_STAGE, h.ERROR_REASON, h.ORIGINAL_TOPIC, h.ORIGINAL_PARTITION, h.ORIGINAL_OFFSET}
    kept = tuple((k, v) for k, v in rec.headers if k not in ours)
    return Outgoing(
        topic=topics.dlq,
        key=rec.key,
        # Kafka takes a record with neither key nor value; aiokafka will not send one.
        value=rec.value if rec.value is not None or rec.key is not None else b"",
        headers=(
            *kept,
            (h.ERROR_STAGE, str(stage).encode()),
            (h.ERROR_REASON, cap_reason(reason).encode()),
            (h.ORIGINAL_TOPIC, rec.topic.encode()),
            (h.ORIGINAL_PARTITION, str(rec.partition).encode()),
            (h.ORIGINAL_OFFSET, str(rec.offset).encode()),
        ),
    )


def receipt(
    topic: str,
    *,
    message_id: str,
    message_source: str,
    message_type: str,
    recipient: str | None,
    outcome: Outcome,
    reason: str | None,
    now: datetime,
) -> Outgoing:
    """A receipt the router writes itself (source `urn:prik:router`), keyed by message id."""
    message = Receipt(
        id=str(uuid.uuid4()),
        source=ROUTER_SOURCE,
        time=now,
        data=ReceiptData(
            message_id=message_id,
            message_source=message_source,
            message_type=message_type,
            recipient=recipient,
            outcome=outcome,
            reason=cap_reason(reason) if reason else None,
            attempts=0,
            at=now,
        ),
    )
    return Outgoing(
        topic=topic,
        key=message_id.encode(),
        value=to_bytes(message),
        headers=((h.CONTENT_TYPE, STRUCTURED_CONTENT_TYPE.encode()),),
    )
