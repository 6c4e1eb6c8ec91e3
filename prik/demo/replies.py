"""The senders' side of the accounting: their replies topics, read as a sender would read them."""

from __future__ import annotations

from datetime import UTC, datetime

from contracts import Receipt, TaskStatusUpdate, Topics
from prik.settings import KafkaSettings
from producers import read_replies

from .tally import Tally

__all__ = ["watch_replies"]


async def watch_replies(kafka: KafkaSettings, topics: Topics, tenant: str, tally: Tally) -> None:
    """Feed `tenant`'s receipts and forwarded task statuses to the tally, until cancelled.

    This is the real path back: an LPS receipt travels ingress -> router -> replies,
    and the router's own receipts (expired, rejected, task statuses) land here too.
    """
    async for message in read_replies(kafka, topics, tenant, follow=True):
        if isinstance(message, Receipt):
            data = message.data
            tally.receipt(data.message_source, data.message_id, data.outcome)
        elif isinstance(message, TaskStatusUpdate):
            seen_at = datetime.now(UTC)
            tally.task_status_seen(
                message.source, message.id, str(message.data.task_id), message.data.status, seen_at
            )
