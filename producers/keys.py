"""Which Kafka key each message type travels under (DESIGN.md, Topics)."""

from __future__ import annotations

from typing import assert_never

from contracts import (
    ConfigError,
    Message,
    Receipt,
    ReferralStatusNotice,
    TaskRequest,
    TaskStatusUpdate,
    VideoQueueNotice,
)

__all__ = ["key_of"]


def key_of(message: Message) -> str:
    """The record key: recipient SOR for advisories and task requests, task id for
    task statuses, the receipted message's id for receipts.

    Keys decide the partition, so per-clinic and per-task order hold; none of
    them ever carries patient data.
    """
    if isinstance(message, VideoQueueNotice | ReferralStatusNotice | TaskRequest):
        if message.recipient is None:  # the models refuse this; the check keeps mypy and readers honest
            msg = f"{message.type} needs a recipient"
            raise ConfigError(msg)
        return message.recipient
    if isinstance(message, TaskStatusUpdate):
        return str(message.data.task_id)
    if isinstance(message, Receipt):
        return message.data.message_id
    assert_never(message)
