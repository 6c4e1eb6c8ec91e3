"""The HTTP ingress's aiohttp application: `POST /v1/messages`, `GET /health`, `GET /openapi.json`.

A request is checked in this order, each step refusing before the next costs
anything: who sends it (401), how often (429), its content type (415), its
declared length (413), then the body is read up to the limit (413), parsed and
validated by the router's own parser (400), admitted by the router's own rule
(403: the source is not the tenant's, or the tenant may not send the type),
and what will be published must fit the router's limit too (413). Only then is
it published, and the answer waits for Kafka's acknowledgement (202).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import HttpVersion11, hdrs, web

from broker.tenancy import admission_refusal
from contracts import MAX_MESSAGE_BYTES, KafkaError, NotAuthorisedError, ParseError, Tenants, codec, parse
from contracts import to_bytes as canonical_bytes
from prik.logs import get_logger

from .auth import BASIC_CHALLENGE
from .binding import UnsupportedMediaType, kafka_headers, mode_of
from .openapi import openapi_document
from .problems import problem
from .ratelimit import RateLimiter
from .sending import Sender

__all__ = ["MESSAGES_PATH", "Authenticator", "Ingress", "make_app"]

MESSAGES_PATH = "/v1/messages"
_CHUNK = 64 * 1024
# Kafka did not take the message: a sender tries again after this many seconds, with the same id.
_KAFKA_RETRY_AFTER = "1"

_log = get_logger(__name__)


class Authenticator(Protocol):
    def tenant_of(self, authorization: str | None) -> str | None: ...


@dataclass(slots=True)
class Ingress:
    """What the application needs; the command line builds it from the settings."""

    tenants: Callable[[], Tenants]
    auth: Authenticator
    sender: Sender
    limiter: RateLimiter
    max_bytes: int = MAX_MESSAGE_BYTES
    # A body that trickles in holds a request open: it gets this long, then a 408.
    body_seconds: float = 30.0
    stopping: bool = field(default=False)


_INGRESS = web.AppKey("ingress", Ingress)


def _refused(tenant: str | None, status: int, reason: str, stage: str | None = None) -> None:
    _log.info("ingress.refused", tenant=tenant, status=status, stage=stage, reason=reason)


async def _body(request: web.Request, limit: int) -> bytes | None:
    """The whole body, or None as soon as it is longer than `limit` (the rest is never read)."""
    buffer = bytearray()
    while chunk := await request.content.read(_CHUNK):
        buffer += chunk
        if len(buffer) > limit:
            return None
    return bytes(buffer)


def _too_large(limit: int) -> web.Response:
    return problem(413, f"the message is over the limit of {limit} bytes")


async def post_message(request: web.Request) -> web.Response:  # noqa: PLR0911  one answer per rule
    ingress = request.app[_INGRESS]
    tenant = ingress.auth.tenant_of(request.headers.get(hdrs.AUTHORIZATION))
    if tenant is None:
        _refused(None, 401, "no valid login")
        return problem(
            401,
            "log in with HTTP Basic: your tenant id and its ingress password",
            headers={hdrs.WWW_AUTHENTICATE: BASIC_CHALLENGE},
        )
    wait = ingress.limiter.take(tenant)
    if wait > 0:
        _refused(tenant, 429, "over the rate")
        rate = ingress.limiter.rate
        return problem(
            429,
            f"over {rate:g} messages a second for this tenant; send it again later",
            headers={hdrs.RETRY_AFTER: str(max(1, math.ceil(wait)))},
        )
    if hdrs.CONTENT_TYPE not in request.headers:
        _refused(tenant, 415, "no content type")
        return problem(415, "say the content type: application/cloudevents+json, or binary mode")
    try:
        mode = mode_of(request.content_type, request.charset, "ce-specversion" in request.headers)
    except UnsupportedMediaType as exc:
        _refused(tenant, 415, str(exc))
        return problem(415, str(exc))
    limit = ingress.max_bytes
    if request.content_length is not None and request.content_length > limit:
        _refused(tenant, 413, "declared length over the limit")
        return _too_large(limit)
    try:
        async with asyncio.timeout(ingress.body_seconds):
            body = await _body(request, limit)
    except TimeoutError:
        _refused(tenant, 408, "body too slow")
        return problem(408, f"the body did not arrive within {ingress.body_seconds:g} s")
    except ConnectionError:
        # The sender hung up mid-body (or its Content-Length promised more): its failure, not the ingress's.
        _refused(tenant, 400, "connection closed before the body arrived")
        return problem(400, "the connection closed before the whole body arrived")
    if body is None:
        _refused(tenant, 413, "body over the limit")
        return _too_large(limit)
    try:
        message = parse(body, kafka_headers(mode, request.headers.items()), max_bytes=limit)
    except ParseError as exc:
        _refused(tenant, 400, exc.reason, exc.stage)
        return problem(400, exc.reason, stage=exc.stage)
    refusal = admission_refusal(message, tenant, ingress.tenants())
    if refusal is not None:
        stage, reason = refusal
        _refused(tenant, 403, reason, str(stage))
        return problem(403, reason, stage=str(stage))
    if len(canonical_bytes(message)) > limit:
        # Binary mode adds the attributes to the data: the router reads the whole event.
        _refused(tenant, 413, "canonical event over the limit")
        return _too_large(limit)
    try:
        result = await ingress.sender.send(tenant, message)
    except (KafkaError, NotAuthorisedError) as exc:
        _log.warning("ingress.kafka_failed", tenant=tenant, error=str(exc))
        return problem(
            503,
            "Kafka did not acknowledge the message; send it again with the same id",
            headers={hdrs.RETRY_AFTER: _KAFKA_RETRY_AFTER},
        )
    _log.debug("ingress.accepted", tenant=tenant, type=message.type, mode=str(mode))
    answer = {"id": message.id, "topic": result.topic, "partition": result.partition, "offset": result.offset}
    return _json(202, answer)


def _json(status: int, body: Any) -> web.Response:  # noqa: ANN401  any JSON value
    return web.Response(status=status, body=codec.dumps(body), content_type="application/json")


async def health(request: web.Request) -> web.Response:
    if request.app[_INGRESS].stopping:
        return _json(503, {"status": "stopping"})
    return _json(200, {"status": "ok"})


async def openapi(request: web.Request) -> web.Response:
    return _json(200, request.app[_OPENAPI])


_OPENAPI = web.AppKey("openapi", dict[str, Any])
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer is prik's: aiohttp's own 404/405 as problems too, and a bug a 500 without details."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k in {hdrs.ALLOW, hdrs.RETRY_AFTER}}
        return problem(exc.status, exc.reason, headers=headers)
    except Exception as exc:  # noqa: BLE001  one request's bug must not take the ingress down
        # The type only: an exception's text may quote the request.
        _log.error("ingress.internal_error", error=type(exc).__name__)
        return problem(500, "the ingress failed on this request")


async def _expect(request: web.Request) -> web.StreamResponse | None:
    """`Expect: 100-continue` goes on; any other expectation is a 417 problem.

    aiohttp's own handler runs outside the middlewares and quotes the header in its
    answer: a header value that is not UTF-8 made that answer fail to encode, a 500.
    """
    if request.version != HttpVersion11:
        return None
    if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
        return problem(417, "the only expectation this ingress meets is 100-continue")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    # The interim answer is no part of the response's size.
    request.writer.output_size = 0
    return None


def _only(method: str) -> Handler:
    async def not_allowed(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMethodNotAllowed(request.method, [method])

    return not_allowed


async def _not_found(request: web.Request) -> web.StreamResponse:
    raise web.HTTPNotFound


def make_app(ingress: Ingress) -> web.Application:
    app = web.Application(middlewares=[_problems])
    app[_INGRESS] = ingress
    app[_OPENAPI] = openapi_document(max_bytes=ingress.max_bytes, rate=ingress.limiter.rate)
    # Every request meets a route of ours, 404s and 405s too, so `_expect` answers every Expect.
    for method, path, handler in (
        (hdrs.METH_POST, MESSAGES_PATH, post_message),
        (hdrs.METH_GET, "/health", health),
        (hdrs.METH_GET, "/openapi.json", openapi),
    ):
        app.router.add_route(method, path, handler, expect_handler=_expect)
        app.router.add_route(hdrs.METH_ANY, path, _only(method), expect_handler=_expect)
    app.router.add_route(hdrs.METH_ANY, "/{anything:.*}", _not_found, expect_handler=_expect)
    return app
