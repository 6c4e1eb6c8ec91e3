"""A sender's view of its replies topic: receipts and task statuses the router sent back."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from contracts import Message, ParseError, Topics, parse
from prik.logs import get_logger
from prik.settings import KafkaSettings

from .reading import read_records

__all__ = ["read_replies"]

_log = get_logger(__name__)


async def read_replies(
    kafka: KafkaSettings,
    topics: Topics,
    tenant: str,
    *,
    follow: bool = False,
) -> AsyncGenerator[Message, None]:
    """Every message on `tenant`'s replies topic, from the beginning.

    Without `follow` it ends at the end of the topic as it was when called;
    with `follow` it keeps waiting for new replies until cancelled. A record
    that does not parse is skipped with a warning (the router writes only valid
    messages, so one would be an operator's mistake, not a sender's reply).
    """
    topic = topics.replies(tenant)
    async for record in read_records(kafka, topic, follow=follow):
        if record.value is None:
            continue
        try:
            yield parse(record.value, record.headers)
        except ParseError as exc:
            _log.warning(
                "skipping an unreadable reply",
                topic=topic,
                partition=record.partition,
                offset=record.offset,
                reason=exc.reason,
            )
