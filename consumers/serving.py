"""The small aiohttp servers of the consumer side: start on a (maybe free) port, stop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from aiohttp import web

__all__ = ["bound_port", "serve", "serve_until_signalled"]


class _Served(Protocol):
    @property
    def url(self) -> str: ...


def bound_port(site: web.TCPSite) -> int:
    """The port an aiohttp site listens on (it may have been asked for port 0)."""
    server = site._server  # noqa: SLF001  aiohttp offers no public way to read the bound port
    sockets = getattr(server, "sockets", None)
    if not sockets:
        msg = "the HTTP server has no listening socket"
        raise RuntimeError(msg)
    port: int = sockets[0].getsockname()[1]
    return port


async def serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Run `app` on `host:port` (0 picks a free port); returns the runner and the bound port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, bound_port(site)


async def serve_until_signalled(
    server: AbstractAsyncContextManager[_Served], on_started: Callable[[str], None] | None = None
) -> None:
    """Run `server` until SIGINT/SIGTERM, then leave it (gracefully); a second signal stops at once."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    main = asyncio.current_task()

    def on_signal() -> None:
        if stopping.is_set() and main is not None:
            main.cancel()
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        async with server as started:
            if on_started is not None:
                on_started(started.url)
            await stopping.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
