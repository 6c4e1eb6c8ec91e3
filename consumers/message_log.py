"""Log lines about one message, paid for only when they are written.

structlog's `bind` builds a logger each call (~9 µs), and a filtered `debug` through
its lazy proxy still costs ~5 µs: py-spy under `prik bench consumer` put them at
14 % of the lanes' CPU, for lines that are only written when a delivery fails.
"""

from __future__ import annotations

import logging

import structlog
from structlog.typing import FilteringBoundLogger

from contracts import Message
from prik.logs import get_logger, trace_fields

__all__ = ["about", "debugging"]

_log = get_logger("prik.consumers")


def about(message: Message, clinic: str, attempts: int | None = None) -> FilteringBoundLogger:
    """The consumer's log bound to one message (its id, sender, clinic and trace; never its data)."""
    fields: dict[str, object] = {"message_id": message.id, "tenant": message.source, "clinic": clinic}
    if attempts is not None:
        fields["attempts"] = attempts
    return _log.bind(**fields, **trace_fields(message.traceparent))


def debugging() -> bool:
    """Whether debug lines are written (cheaper than a filtered call through structlog's proxy)."""
    level = getattr(structlog.get_config()["wrapper_class"], "get_effective_level", None)
    try:
        return level is None or int(level(None)) <= logging.DEBUG
    except (TypeError, ValueError):
        return True
