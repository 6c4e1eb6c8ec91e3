"""The small aiohttp servers of the consumer side: start on a (maybe free) port, stop."""

from __future__ import annotations

from aiohttp import web

__all__ = ["bound_port", "serve"]


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
