"""structlog: JSON lines when not on a terminal, readable otherwise."""

from __future__ import annotations

import logging
import sys
from collections.abc import Collection, Mapping

import structlog

from contracts import codec

__all__ = ["configure_logging", "debug_enabled", "get_logger", "trace_fields"]

# The level configure_logging set; until then everything is shown (structlog's default).
_level = logging.NOTSET


def configure_logging(level: str = "info", *, json: bool | None = None) -> None:
    use_json = not sys.stderr.isatty() if json is None else json
    numeric = logging.getLevelNamesMapping()[level.upper()]
    global _level  # noqa: PLW0603 - one process-wide level, as structlog's own configuration is
    _level = numeric
    _route_library_logs(numeric)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(serializer=codec.dumps_log)
        if use_json
        else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info if use_json else structlog.processors.StackInfoRenderer(),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


# Libraries whose log records prik routes through structlog instead of the bare stderr fallback.
# aiohttp: a malformed HTTP request (the ingress, the dashboard) is answered 400 and
# otherwise logged with a traceback by its server.
_LIBRARIES = ("aiokafka", "faststream", "confluent_kafka", "aiohttp")


class _LibraryHandler(logging.Handler):
    """Library records as structlog lines, at the level they mean to a prik user.

    aiokafka logs every retry and every failed connect as a warning or an error, and
    prik reports the failure that matters in its own words (one line, exit code), so
    below CRITICAL they are debug lines: `PRIK_LOG_LEVEL=debug` shows them.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = _without_bytes(record)
        except Exception:  # noqa: BLE001  a library's bad format string must not break logging
            text = str(record.msg)
        level = logging.CRITICAL if record.levelno >= logging.CRITICAL else logging.DEBUG
        get_logger(record.name).log(level, "library", library=record.name, message=text)


def _without_bytes(record: logging.LogRecord) -> str:
    """The record's message with no record content in it: bytes as their size, objects as their type.

    aiokafka's debug lines quote whole records ("Sending (key=%s value=%s)") and whole
    fetch responses (their message sets), and a record's value holds patient data (a
    CPR): no log line may carry it. Only plain scalars, and containers of them, are shown.
    """
    if not isinstance(record.msg, str):
        return f"<{type(record.msg).__name__}>"
    args = record.args
    if isinstance(args, tuple) and args:
        return record.msg % tuple(_shown(a) for a in args)
    if isinstance(args, dict) and args:
        return record.msg % {k: _shown(v) for k, v in args.items()}
    return record.msg


_SCALARS = (str, int, float, bool, type(None))
_MAX_ITEMS = 20


def _shown(value: object, depth: int = 0) -> object:
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    if depth < 3 and isinstance(value, tuple | list | set | frozenset | dict):
        return _shown_container(value, depth)
    return f"<{type(value).__name__}>"


def _shown_container(value: Collection[object] | Mapping[object, object], depth: int) -> object:
    if isinstance(value, Mapping):
        return {str(_shown(k, depth + 1)): _shown(v, depth + 1) for k, v in list(value.items())[:_MAX_ITEMS]}
    items = [_shown(v, depth + 1) for v in list(value)[:_MAX_ITEMS]]
    if len(value) <= _MAX_ITEMS and all(a is b for a, b in zip(items, value, strict=False)):
        return value  # nothing hidden in it (a TopicPartition keeps its readable form)
    return items


def _route_library_logs(level: int) -> None:
    handler = _LibraryHandler()
    for name in _LIBRARIES:
        library = logging.getLogger(name)
        library.handlers = [handler]
        library.propagate = False
        library.setLevel(logging.DEBUG if level <= logging.DEBUG else logging.WARNING)


def debug_enabled() -> bool:
    """Whether debug lines are shown: a per-record debug line costs a logger build even when filtered."""
    return _level <= logging.DEBUG


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger


def trace_fields(traceparent: str | None) -> dict[str, str]:
    """`{"trace_id": ...}` for a message that carries a W3C `traceparent`, else nothing.

    The trace id (32 hex digits, the second field of `00-<trace id>-<parent id>-<flags>`)
    lets an operator follow one message from the sender's trace through prik's log lines.
    The contract has validated the header, so the split cannot fail on a real message.
    """
    if traceparent is None:
        return {}
    parts = traceparent.split("-")
    return {"trace_id": parts[1]} if len(parts) >= 4 and len(parts[1]) == 32 else {}
