"""The runtime's small HTTP server: `GET /health`, `GET /metrics`, `POST /tasks/{task_id}/status`.

`/metrics` is Prometheus text (the series of DESIGN.md, "Accounting"); `/health` is
JSON progress with the runtime's counters (503 when unhealthy), and the same
counters alone stay at `/metrics.json` for scripts that read them.

The task endpoint is how an LPS answers a task over HTTP. It is authenticated
the same way prik signs webhooks to the LPS: Standard Webhooks headers signed
with a webhook secret, verified by the `standardwebhooks` library. While secrets
are rotated several are active; a signature valid under any of them is accepted. The path is
not signed, so the signed body must name the same `task_id` (400 otherwise); and
a signed request may be sent only once: a `webhook-id` already accepted within
the signature's 5-minute tolerance is refused (409), so a captured request cannot
be replayed. A request that fails (400, 503) frees its id for a corrected retry.
"""

from __future__ import annotations

import heapq
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from contracts import KafkaError, PrikError, codec

from .errors import TaskAnswerRefused
from .serving import serve
from .signing import WebhookSecrets
from .stats import HealthReport

__all__ = ["ReplayGuard", "RuntimeHttp"]

Answer = Callable[[str, str, str | None, str | None], Awaitable[Any]]

_MAX_BODY = 16 * 1024
# Standard Webhooks receivers accept timestamps up to 5 minutes off, either way.
TOLERANCE = 5 * 60.0


class ReplayGuard:
    """The `webhook-id`s of accepted requests, each kept while its signature could still verify.

    A signature verifies while its timestamp is within `tolerance` of now, so an id is
    kept until `timestamp + tolerance`. At most `max_ids` are kept (memory stays bounded);
    when that many are live, new requests are refused until some expire.
    """

    def __init__(self, tolerance: float = TOLERANCE, max_ids: int = 100_000) -> None:
        self._tolerance = tolerance
        self._max_ids = max_ids
        self._until: dict[str, float] = {}
        self._expiry: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._until)

    def claim(self, webhook_id: str, timestamp: float, now: float | None = None) -> bool | None:
        """True: first use, now held; False: a replay; None: too many live ids, try later."""
        moment = time.time() if now is None else now
        while self._expiry and self._expiry[0][0] < moment:
            until, old = heapq.heappop(self._expiry)
            if self._until.get(old) == until:
                del self._until[old]
        if webhook_id in self._until:
            return False
        if len(self._until) >= self._max_ids:
            return None
        # +1: the library floors the header to whole seconds.
        until = max(timestamp, moment) + self._tolerance + 1.0
        self._until[webhook_id] = until
        heapq.heappush(self._expiry, (until, webhook_id))
        return True

    def release(self, webhook_id: str) -> None:
        """Forget an id whose request was not carried out, so the sender may retry it."""
        self._until.pop(webhook_id, None)


def _json(status: int, body: dict[str, object]) -> web.Response:
    return web.Response(status=status, body=codec.dumps(body), content_type="application/json")


def _error(status: int, reason: str) -> web.Response:
    return _json(status, {"error": reason})


def _active(secrets: str | Iterable[str] | WebhookSecrets | None) -> WebhookSecrets | None:
    if secrets is None or isinstance(secrets, WebhookSecrets):
        return secrets
    given = [secrets] if isinstance(secrets, str) else list(secrets)
    return WebhookSecrets(given) if given else None


def _same_task(body_id: str, path_id: str) -> bool:
    try:
        return uuid.UUID(body_id) == uuid.UUID(path_id)
    except ValueError:
        return body_id == path_id  # not a task id at all: refused further on unless identical


class RuntimeHttp:
    """Serves health, metrics and task answers on `host:port` (port 0 picks a free one).

    `secrets`: the active webhook secrets (one or several); without any, the task
    endpoint answers 403. `metrics` gives the counters as JSON; `prometheus`, when given,
    the Prometheus exposition served at `/metrics`.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        secrets: str | Iterable[str] | WebhookSecrets | None,
        health: Callable[[], HealthReport],
        metrics: Callable[[], dict[str, object]],
        answer: Answer,
        prometheus: Callable[[], Awaitable[bytes]] | None = None,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._secrets = _active(secrets)
        self._health = health
        self._metrics = metrics
        self._answer = answer
        self._prometheus = prometheus
        self._replays = ReplayGuard()
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_get("/health", self._get_health)
        if self._prometheus is not None:
            app.router.add_get("/metrics", self._get_prometheus)
        app.router.add_get("/metrics.json", self._get_metrics)
        app.router.add_post("/tasks/{task_id}/status", self._post_task_status)
        self._runner, self.port = await serve(app, self._host, self._requested_port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _get_health(self, _request: web.Request) -> web.Response:
        report = self._health()
        body: dict[str, object] = {
            **self._metrics(),
            "healthy": report.healthy,
            "reason": report.reason,
            "pending": report.pending,
            "endpoint": report.endpoint,
        }
        return _json(200 if report.healthy else 503, body)

    async def _get_metrics(self, _request: web.Request) -> web.Response:
        return _json(200, self._metrics())

    async def _get_prometheus(self, _request: web.Request) -> web.Response:
        assert self._prometheus is not None  # noqa: S101  routed only when given
        return web.Response(body=await self._prometheus(), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    async def _post_task_status(self, request: web.Request) -> web.Response:
        if self._secrets is None:
            return _error(403, "task endpoint disabled: the consumer has no webhook secret")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, "body too large")
        if not self._secrets.verify(body, request.headers):
            return _error(401, "missing or invalid webhook signature")
        # Verified, so both headers are present and the timestamp is a number.
        webhook_id = request.headers["webhook-id"]
        claimed = self._replays.claim(webhook_id, float(request.headers["webhook-timestamp"]))
        if claimed is None:
            return _error(503, "too many task answers in the last minutes, try again")
        if not claimed:
            return _error(409, "this webhook-id was already used: sign each request with a new one")
        response = await self._answer_task(request.match_info["task_id"], body)
        if response.status >= 300:
            self._replays.release(webhook_id)
        return response

    async def _answer_task(self, path_task_id: str, body: bytes) -> web.Response:  # noqa: PLR0911  one answer per check
        try:
            payload = codec.loads(body)
        except PrikError:
            return _error(400, "body is not JSON")
        if not isinstance(payload, dict):
            return _error(400, "body must be a JSON object")
        task_id = payload.get("task_id")
        if not isinstance(task_id, str):
            return _error(400, "task_id is required in the body and must be a string")
        if not _same_task(task_id, path_task_id):
            # The path is not signed: only the body says which task this answer is for.
            return _error(400, "task_id in the body does not match the path")
        status, reason = payload.get("status"), payload.get("reason")
        business_status = payload.get("business_status")
        if not isinstance(status, str):
            return _error(400, "status is required and must be a string")
        if not all(value is None or isinstance(value, str) for value in (reason, business_status)):
            return _error(400, "reason and business_status must be strings")
        try:
            update = await self._answer(task_id, status, reason, business_status)
        except TaskAnswerRefused as exc:
            return _error(400, str(exc))
        except KafkaError:
            return _error(503, "could not publish the task status, try again")
        return _json(202, {"id": update.id, "task_id": str(update.data.task_id), "status": status})
