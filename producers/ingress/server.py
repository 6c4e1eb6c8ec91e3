"""Running the ingress: listen, serve until SIGINT/SIGTERM, finish what is in flight, flush Kafka."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from types import TracebackType
from typing import Self

from aiohttp import web

from prik.logs import get_logger

from .app import Ingress, make_app

__all__ = ["IngressServer"]

_log = get_logger(__name__)


class IngressServer:
    """The ingress on `host:port` (0: any free port; `port` then says which).

    Stopping refuses new connections, gives requests in flight `grace` seconds
    to get Kafka's answer, then flushes and closes the producers.
    """

    def __init__(
        self, ingress: Ingress, *, host: str = "127.0.0.1", port: int = 8081, grace: float = 30.0
    ) -> None:
        self.ingress = ingress
        self._host = host
        self._requested_port = port
        self._grace = grace
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        runner = web.AppRunner(make_app(self.ingress), access_log=None, shutdown_timeout=self._grace)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = _bound_port(runner)
        _log.info("ingress.started", url=self.url)

    async def stop(self) -> None:
        self.ingress.stopping = True
        runner, self._runner = self._runner, None
        try:
            if runner is not None:
                await runner.cleanup()
        finally:
            await self.ingress.sender.close()
        _log.info("ingress.stopped")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, _type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def run(self, on_started: Callable[[str], None] | None = None) -> None:
        """Serve until SIGINT/SIGTERM; a second signal stops at once."""
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
            async with self:
                if on_started is not None:
                    on_started(self.url)
                await stopping.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    msg = "the ingress has no listening socket"
    raise RuntimeError(msg)
