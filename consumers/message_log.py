"""Log lines about one message, paid for only when they are written.

structlog's `bind` builds a logger each call (~9 µs), and a filtered `debug` through
its lazy proxy still costs ~5 µs: py-spy under `prik bench consumer` put them at
14 % of the lanes' CPU, for lines that are only written when a delivery fails. The
per-message debug line asks `prik.logs.debug_enabled()` first.
"""

from __future__ import annotations

from structlog.typing import FilteringBoundLogger

from contracts import Message
from prik.logs import get_logger, trace_fields

__all__ = ["about"]

_log = get_logger("prik.consumers")


def about(message: Message, clinic: str, attempts: int | None = None) -> FilteringBoundLogger:
    """The consumer's log bound to one message (its id, sender, clinic and trace; never its data)."""
    fields: dict[str, object] = {"message_id": message.id, "tenant": message.source, "clinic": clinic}
    if attempts is not None:
        fields["attempts"] = attempts
    return _log.bind(**fields, **trace_fields(message.traceparent))
