"""A reference LPS: the receiving end of prik's webhooks, for tests and the demo.

It does what every real receiver must: verifies Standard Webhooks signatures
(401 otherwise), drops duplicates by `webhook-id` while answering them 200 again
(the same acknowledgement, never shown twice), and records what it accepted.
It can be told to fail per clinic, to exercise retries, dead letters and isolation.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from aiohttp import web

from contracts import PrikError, codec

from .serving import serve
from .signing import WebhookSecrets, generate_secret

__all__ = ["ClinicFailure", "Received", "ReferenceLps"]


@dataclass(frozen=True, slots=True)
class Received:
    """One message the LPS accepted (first copy only)."""

    clinic: str
    message_id: str
    type: str
    webhook_id: str
    received_at: datetime
    received_monotonic: float
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class ClinicFailure:
    """How to answer a clinic's webhooks until `until` (monotonic): `status` after `delay` seconds."""

    status: int
    until: float
    retry_after: str | None
    delay: float


_WEBHOOK_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")

OnReceive = Callable[[Received], Awaitable[None] | None]


class ReferenceLps:
    """An aiohttp server taking prik's webhooks at `POST /webhook` (`url`).

    `secret` is one `whsec_...` secret or several (a receiver in the middle of a rotation
    accepts a signature by any of them); it defaults to a fresh one. `secret` is the
    first, `secrets` all of them: pass them to the consumer's `WebhookDeliverer`.
    `on_receive` is called for each first copy accepted (the demo answers tasks from it).
    """

    def __init__(
        self,
        secret: str | Iterable[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        on_receive: OnReceive | None = None,
    ) -> None:
        given = [secret] if isinstance(secret, str) else list(secret or ())
        self.secrets: tuple[str, ...] = tuple(given) if given else (generate_secret(),)
        self.secret = self.secrets[0]
        self._verifier = WebhookSecrets(self.secrets)
        self._host = host
        self._requested_port = port
        self.on_receive = on_receive
        self._runner: web.AppRunner | None = None
        self._seen: set[str] = set()
        self._failures: dict[str, ClinicFailure] = {}
        self.port: int | None = None
        self.received: list[Received] = []
        self.duplicates = 0
        self.bad_signatures = 0
        # Every answer given, per clinic and status (failures included): lets tests see the retries.
        self.answers: Counter[tuple[str, int]] = Counter()
        # (clinic, status, monotonic time) of every verified request, in arrival order.
        self.attempts: list[tuple[str, int, float]] = []
        self.changed = asyncio.Event()

    @property
    def url(self) -> str:
        """The webhook URL to hand to the consumer."""
        if self.port is None:
            msg = "ReferenceLps is not started"
            raise RuntimeError(msg)
        return f"http://{self._host}:{self.port}/webhook"

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post("/webhook", self._post_webhook)
        self._runner, self.port = await serve(app, self._host, self._requested_port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def fail_clinic(
        self,
        sor: str,
        status: int = 503,
        for_seconds: float = 30.0,
        retry_after: float | str | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer `sor`'s webhooks with `status` (after `delay` s) for the next `for_seconds` seconds."""
        header = None if retry_after is None else str(retry_after)
        self._failures[sor] = ClinicFailure(status, time.monotonic() + for_seconds, header, delay)

    def heal_clinic(self, sor: str) -> None:
        self._failures.pop(sor, None)

    def for_clinic(self, sor: str) -> list[Received]:
        return [item for item in self.received if item.clinic == sor]

    def ids(self) -> set[str]:
        return {item.message_id for item in self.received}

    async def wait_for(self, count: int, timeout: float = 30.0) -> None:  # noqa: ASYNC109  convenience
        """Wait until at least `count` distinct messages were accepted."""
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self.changed.clear()
                await self.changed.wait()

    async def _post_webhook(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self._verifier.verify(body, request.headers):
            self.bad_signatures += 1
            return web.Response(status=401, text="bad signature")
        webhook_id = request.headers["webhook-id"]
        try:
            envelope = codec.loads(body)
        except PrikError:
            return web.Response(status=400, text="not JSON")
        if not isinstance(envelope, dict):
            return web.Response(status=400, text="not a JSON object")
        clinic = str(envelope.get("recipient") or "-")
        failure = self._failures.get(clinic)
        if failure is not None and time.monotonic() >= failure.until:
            del self._failures[clinic]
            failure = None
        if failure is not None:
            if failure.delay:
                await asyncio.sleep(failure.delay)
            if not 200 <= failure.status < 300:
                self.answers[(clinic, failure.status)] += 1
                self.attempts.append((clinic, failure.status, time.monotonic()))
                headers = {"retry-after": failure.retry_after} if failure.retry_after else None
                return web.Response(status=failure.status, headers=headers, text="failing on purpose")
        self.answers[(clinic, 200)] += 1
        self.attempts.append((clinic, 200, time.monotonic()))
        if webhook_id in self._seen:
            # The same acknowledgement again, and nothing shown twice.
            self.duplicates += 1
            return web.Response(status=200, text="duplicate")
        self._seen.add(webhook_id)
        item = Received(
            clinic=clinic,
            message_id=str(envelope.get("id")),
            type=str(envelope.get("type")),
            webhook_id=webhook_id,
            received_at=datetime.now(UTC),
            received_monotonic=time.monotonic(),
            body=body,
            headers={name: request.headers[name] for name in _WEBHOOK_HEADERS},
        )
        self.received.append(item)
        self.changed.set()
        if self.on_receive is not None:
            result = self.on_receive(item)
            if result is not None:
                await result
        return web.Response(status=200, text="ok")
