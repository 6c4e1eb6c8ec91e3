"""The operators' page: `GET /` (the page), `GET /api/state` (JSON), `GET /events` (server-sent events).

One collector samples Kafka every tick; every open page gets each new state
over its event stream, so ten open pages cost Kafka no more than one.
Nothing is fetched from outside this server: the page's script and style ship
in the package (`prik/dashboard/static/`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Self

from aiohttp import web

from consumers.serving import serve, serve_until_signalled
from contracts import Topics
from contracts.tenants import Tenants
from prik.logs import get_logger
from prik.settings import KafkaSettings

from .collector import Collector, PeakFinder
from .model import DashboardState

__all__ = ["STATIC_DIR", "Dashboard", "make_app"]

_log = get_logger("prik.dashboard")

STATIC_DIR = Path(str(resources.files("prik.dashboard") / "static"))

# The page loads only what this server serves; nothing inline, nothing from elsewhere.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


class _Latest:
    """The newest state, and a way to wait for the next one."""

    def __init__(self) -> None:
        self.state: DashboardState | None = None
        self.json: bytes = b""
        self._changed = asyncio.Event()
        self.closing = asyncio.Event()

    def publish(self, state: DashboardState) -> None:
        self.state = state
        self.json = state.model_dump_json().encode()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def next(self) -> bool:
        """Wait for a new state; False once the server is closing."""
        changed = self._changed
        waiters = {asyncio.ensure_future(changed.wait()), asyncio.ensure_future(self.closing.wait())}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return not self.closing.is_set()


_LATEST = web.AppKey("latest", _Latest)


def _load_static() -> dict[str, tuple[bytes, str]]:
    """The shipped files by name, read once: served from memory, never by a path from a request."""
    return {
        path.name: (path.read_bytes(), _STATIC_TYPES[path.suffix])
        for path in STATIC_DIR.iterdir()
        if path.is_file() and path.suffix in _STATIC_TYPES
    }


_STATIC = web.AppKey("static", dict[str, tuple[bytes, str]])


def _file(request: web.Request, name: str) -> web.Response:
    found = request.app[_STATIC].get(name)
    if found is None:
        raise web.HTTPNotFound
    body, content_type = found
    return web.Response(body=body, content_type=content_type, charset="utf-8", headers=_SECURITY_HEADERS)


async def _page(request: web.Request) -> web.Response:
    return _file(request, "index.html")


async def _asset(request: web.Request) -> web.Response:
    return _file(request, request.match_info["name"])


async def _state(request: web.Request) -> web.Response:
    latest = request.app[_LATEST]
    if latest.state is None:
        raise web.HTTPServiceUnavailable(text="no sample yet", headers={"Retry-After": "2"})
    return web.Response(body=latest.json, content_type="application/json", headers=_SECURITY_HEADERS)


async def _events(request: web.Request) -> web.StreamResponse:
    latest = request.app[_LATEST]
    response = web.StreamResponse(
        headers={**_SECURITY_HEADERS, "Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    # The browser reconnects by itself after a dropped stream; 2 s matches the tick.
    await response.write(b"retry: 2000\n\n")
    try:
        if latest.state is not None:
            await response.write(b"data: " + latest.json + b"\n\n")
        while await latest.next():
            await response.write(b"data: " + latest.json + b"\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        # The page was closed, or the server is stopping: nothing more to send.
        return response
    return response


def make_app(latest: _Latest) -> web.Application:
    app = web.Application()
    app[_LATEST] = latest
    app[_STATIC] = _load_static()
    app.router.add_get("/", _page)
    app.router.add_get("/static/{name}", _asset)
    app.router.add_get("/api/state", _state)
    app.router.add_get("/events", _events)
    return app


class Dashboard:
    """The page and its collector, started and stopped together.

    Used by `prik dashboard`, and by anything that wants the page next to it for a
    while (the demo): `async with Dashboard(...) as dash: print(dash.url)`.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: Topics,
        tenants: Tenants,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        tick: float = 2.0,
        window: int = 300,
        peak: PeakFinder | None = None,
    ) -> None:
        self._collector = Collector(kafka, topics, tenants, tick=tick, window=window, peak=peak)
        self._host = host
        self._port = port
        self._latest = _Latest()
        self._runner: web.AppRunner | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/"

    async def start(self) -> None:
        await self._collector.start()
        try:
            self._latest.publish(await self._collector.refresh())
            self._runner, self.port = await serve(make_app(self._latest), self._host, self._port)
        except BaseException:
            await self._collector.stop()
            raise
        self._loop_task = asyncio.create_task(self._sample_forever(), name="prik-dashboard-sample")
        _log.info("dashboard started", url=self.url)

    async def _sample_forever(self) -> None:
        while True:
            await asyncio.sleep(self._collector.tick)
            self._latest.publish(await self._collector.refresh())

    async def stop(self) -> None:
        self._latest.closing.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._runner is not None:
            await self._runner.cleanup()
        await self._collector.stop()
        _log.info("dashboard stopped")

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
