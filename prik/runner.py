"""Run a coroutine to the end, and the sockets it was closing to the end too.

aiokafka closes its bootstrap connection without waiting for it, and a TLS
connection closes in the background (close_notify both ways). `asyncio.run`
then closes the event loop under that socket, which Python reports as an
"unclosed transport". `run_to_end` cancels what is left, as `asyncio.run`
does, and then waits, briefly, for the sockets still closing.
"""

from __future__ import annotations

import asyncio
from asyncio.sslproto import SSLProtocol
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["closing_sockets", "run_to_end", "sockets_closed"]

T = TypeVar("T")

# A TLS close is one loopback round trip; one still going after this is left to warn.
_SETTLE_WITHIN = 2.0
_POLL = 0.005


def run_to_end(main: Coroutine[Any, Any, T], *, settle_within: float = _SETTLE_WITHIN) -> T:
    """`asyncio.run(main)`, waiting up to `settle_within` seconds for sockets still closing at its end."""
    with asyncio.Runner() as runner:
        try:
            return runner.run(main)
        finally:
            runner.run(_wind_down(settle_within))


async def _wind_down(within: float) -> None:
    """Cancel the tasks left (a task may close its socket as it goes), then wait for the closes."""
    loop = asyncio.get_running_loop()
    left = asyncio.all_tasks() - {asyncio.current_task()}
    for task in left:
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)
    for task in left:
        if not task.cancelled() and task.exception() is not None:
            # What asyncio.run reports of such a task, not swallowed by the gather.
            loop.call_exception_handler(
                {
                    "message": "unhandled exception during shutdown",
                    "exception": task.exception(),
                    "task": task,
                }
            )
    await sockets_closed(within)


def _closing(transport: asyncio.BaseTransport) -> bool:
    sock = transport.get_extra_info("socket")
    if sock is None or sock.fileno() == -1:
        return False
    if transport.is_closing():
        return True
    # Under TLS the socket stays open while close_notify goes both ways; the TLS layer knows.
    protocol = transport.get_protocol()
    if isinstance(protocol, SSLProtocol):
        tls = getattr(protocol, "_app_transport", None)  # asyncio has no public way to it
        return tls is not None and bool(tls.is_closing())
    return False


def closing_sockets(loop: asyncio.AbstractEventLoop) -> int:
    """How many of `loop`'s sockets are closing but not closed yet (one left open is not counted)."""
    # The selector loops keep a weak map fd -> transport to refuse a reused fd;
    # asyncio has no public way to list a loop's transports. Other loops: none known.
    transports = getattr(loop, "_transports", None)
    if transports is None:
        return 0
    return sum(_closing(transport) for transport in list(transports.values()))


async def sockets_closed(within: float = _SETTLE_WITHIN) -> None:
    """Return once the running loop has no socket closing, or after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    # asyncio signals no socket's close to anyone but its protocol, which aiokafka owns.
    while closing_sockets(loop) and loop.time() < deadline:  # noqa: ASYNC110 - nothing to wait on but time
        await asyncio.sleep(_POLL)
