"""Running the ingress: listen, serve until SIGINT/SIGTERM, finish what is in flight, flush Kafka."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Self

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from consumers.serving import serve_until_signalled
from prik.logs import get_logger

from .app import Ingress, make_app
from .problems import problem

__all__ = ["IngressServer"]

_log = get_logger(__name__)


class _ProblemHandler(RequestHandler):
    """aiohttp's connection handler, but a request its HTTP parser refuses gets a problem too.

    aiohttp answers those itself in text/plain, quoting the offending bytes (a header
    line, the request line), which may hold a CPR: the ingress never echoes a request.
    """

    __slots__ = ()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's own: it logs (routed to debug lines by prik.logs) and refuses a half-sent answer.
        super().handle_error(request, status, exc, None)
        detail = "not a valid HTTP request" if status < 500 else "the ingress failed on this request"
        answer = problem(status, detail)
        answer.force_close()
        return answer


class _ProblemServer(web.Server):
    def __call__(self) -> RequestHandler:
        handler = super().__call__()
        # Same slots, one method more: aiohttp has no hook for the handler's class.
        handler.__class__ = _ProblemHandler
        return handler


class _Runner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # aiohttp builds its Server inside AppRunner; the class is all that changes.
        server.__class__ = _ProblemServer
        return server


class IngressServer:
    """The ingress on `host:port` (0: any free port; `port` then says which).

    Stopping refuses new connections, gives requests in flight `grace` seconds
    to get Kafka's answer, then flushes and closes the producers. A connection
    with no request under way (idle, or its headers still trickling in) is
    closed after `idle` seconds: aiohttp's own default is an hour.
    """

    def __init__(
        self,
        ingress: Ingress,
        *,
        host: str = "127.0.0.1",
        port: int = 8081,
        grace: float = 30.0,
        idle: float = 30.0,
    ) -> None:
        self.ingress = ingress
        self._host = host
        self._requested_port = port
        self._grace = grace
        self._idle = idle
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        runner = _Runner(
            make_app(self.ingress),
            access_log=None,
            shutdown_timeout=self._grace,
            keepalive_timeout=self._idle,
        )
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
        await serve_until_signalled(self, on_started)


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    msg = "the ingress has no listening socket"
    raise RuntimeError(msg)
