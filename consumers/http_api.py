"""The runtime's small HTTP server: `GET /health`, `GET /metrics`, `POST /tasks/{task_id}/status`.

The task endpoint is how an LPS answers a task over HTTP. It is authenticated
the same way prik signs webhooks to the LPS: Standard Webhooks headers signed
with the webhook secret, verified by the `standardwebhooks` library.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from contracts import KafkaError, PrikError, codec

from .errors import TaskAnswerRefused
from .signing import bound_port, make_webhook, verify_signature
from .stats import HealthReport

__all__ = ["RuntimeHttp"]

Answer = Callable[[str, str, str | None, str | None], Awaitable[Any]]

_MAX_BODY = 16 * 1024


def _json(status: int, body: dict[str, object]) -> web.Response:
    return web.Response(status=status, body=codec.dumps(body), content_type="application/json")


def _error(status: int, reason: str) -> web.Response:
    return _json(status, {"error": reason})


class RuntimeHttp:
    """Serves health, metrics and task answers on `host:port` (port 0 picks a free one)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        secret: str | None,
        health: Callable[[], HealthReport],
        metrics: Callable[[], dict[str, object]],
        answer: Answer,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._webhook = make_webhook(secret) if secret is not None else None
        self._health = health
        self._metrics = metrics
        self._answer = answer
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_get("/health", self._get_health)
        app.router.add_get("/metrics", self._get_metrics)
        app.router.add_post("/tasks/{task_id}/status", self._post_task_status)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._requested_port)
        await site.start()
        self._runner = runner
        self.port = bound_port(site)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _get_health(self, _request: web.Request) -> web.Response:
        report = self._health()
        body: dict[str, object] = {
            "healthy": report.healthy,
            "reason": report.reason,
            "pending": report.pending,
            "progress": self._metrics()["progress"],
        }
        return _json(200 if report.healthy else 503, body)

    async def _get_metrics(self, _request: web.Request) -> web.Response:
        return _json(200, self._metrics())

    async def _post_task_status(self, request: web.Request) -> web.Response:  # noqa: PLR0911  one answer per check
        if self._webhook is None:
            return _error(403, "task endpoint disabled: the consumer has no webhook secret")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, "body too large")
        if not verify_signature(self._webhook, body, request.headers):
            return _error(401, "missing or invalid webhook signature")
        try:
            payload = codec.loads(body)
        except PrikError:
            return _error(400, "body is not JSON")
        if not isinstance(payload, dict):
            return _error(400, "body must be a JSON object")
        status, reason = payload.get("status"), payload.get("reason")
        business_status = payload.get("business_status")
        if not isinstance(status, str):
            return _error(400, "status is required and must be a string")
        if not all(value is None or isinstance(value, str) for value in (reason, business_status)):
            return _error(400, "reason and business_status must be strings")
        try:
            update = await self._answer(request.match_info["task_id"], status, reason, business_status)
        except TaskAnswerRefused as exc:
            return _error(400, str(exc))
        except KafkaError:
            return _error(503, "could not publish the task status, try again")
        return _json(202, {"id": update.id, "task_id": str(update.data.task_id), "status": status})
