"""Run a coroutine to the end, and its sockets to the end too.

aiokafka closes its bootstrap connection without waiting for it, and a TLS
connection closes in the background (close_notify both ways). `asyncio.run`
then closes the event loop under that socket, which Python reports as an
"unclosed transport". `run_to_end` waits, briefly, for the loop's sockets first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["open_sockets", "run_to_end", "sockets_closed"]

T = TypeVar("T")

# A TLS close is one loopback round trip; a socket still open after this was never closed at all.
_SETTLE_WITHIN = 2.0
_POLL = 0.005


def run_to_end(main: Coroutine[Any, Any, T], *, settle_within: float = _SETTLE_WITHIN) -> T:
    """`asyncio.run(main)`, then up to `settle_within` seconds for sockets still closing."""
    with asyncio.Runner() as runner:
        try:
            return runner.run(main)
        finally:
            runner.run(sockets_closed(settle_within))


def open_sockets(loop: asyncio.AbstractEventLoop) -> int:
    """How many of `loop`'s socket transports still hold an open socket."""
    # The selector loops keep a weak map fd -> transport to refuse a reused fd;
    # asyncio has no public way to list a loop's transports. Other loops: none known.
    transports = getattr(loop, "_transports", None)
    if transports is None:
        return 0
    count = 0
    for transport in list(transports.values()):
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.fileno() != -1:
            count += 1
    return count


async def sockets_closed(within: float = _SETTLE_WITHIN) -> None:
    """Return once the running loop has no open socket, or after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    # asyncio signals no socket's close to anyone but its protocol, which aiokafka owns.
    while open_sockets(loop) and loop.time() < deadline:  # noqa: ASYNC110 - nothing to wait on but time
        await asyncio.sleep(_POLL)
