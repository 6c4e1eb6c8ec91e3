"""How a message reaches the LPS: a signed webhook, an in-process callback, or a printed line."""

from __future__ import annotations

import asyncio
import ipaddress
import sys
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Protocol, TextIO

import aiohttp
from yarl import URL

from contracts import ConfigError, Message, rfc3339, to_bytes

from .backoff import parse_retry_after
from .errors import DeliveryRefused, EndpointGone, RetriableDeliveryError
from .signing import WebhookSecrets

__all__ = [
    "CallbackDeliverer",
    "Deliverer",
    "Delivery",
    "PrintDeliverer",
    "WebhookDeliverer",
    "check_webhook_url",
]


class Delivery:
    """One attempt to hand `message` to the LPS for `clinic` (its SOR, the record key).

    `body` is what a webhook sends: the canonical structured encoding of `message`
    (never the record's own bytes, so a JSON reader at the LPS sees exactly what was
    checked). Given as None it is written when first asked for: an in-process
    deliverer never asks, and the encoding was ~4 µs a message.
    """

    __slots__ = ("_body", "attempt", "clinic", "message")

    def __init__(self, message: Message, body: bytes | None, clinic: str, attempt: int) -> None:
        self.message = message
        self._body = body
        self.clinic = clinic
        self.attempt = attempt

    @property
    def body(self) -> bytes:
        body = self._body
        if body is None:
            body = self._body = to_bytes(self.message)
        return body

    @property
    def written(self) -> bytes | None:
        """The body, if it was written already (for the next attempt of the same message)."""
        return self._body

    def __repr__(self) -> str:
        return f"Delivery(message_id={self.message.id!r}, clinic={self.clinic!r}, attempt={self.attempt})"


class Deliverer(Protocol):
    """Hands one message to the LPS; returns when it was accepted.

    Raise `DeliveryRefused` when trying again cannot help (dead-letter at once) and
    `RetriableDeliveryError` (or anything else) when it may.
    """

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def deliver(self, delivery: Delivery) -> None: ...


_LOOPBACK_NAMES = frozenset({"localhost"})


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback  # 127.0.0.0/8 and ::1
    except ValueError:
        return False


def check_webhook_url(url: str) -> str:
    """`url` if it is https, or http to this machine (loopback); else a ConfigError.

    Patient data and signatures never cross a network in clear text. The error
    never quotes the URL: it may carry credentials (`https://user:pass@...`).
    """
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        msg = "webhook URL is not a valid https:// URL"
        raise ConfigError(msg) from None
    # The host as aiohttp will connect to it (yarl is its parser), so no reading differs.
    host = parsed.host
    if parsed.scheme not in {"http", "https"} or not host:
        msg = "webhook URL must be an https:// URL with a host"
        raise ConfigError(msg)
    if parsed.scheme == "http" and not _is_loopback(host):
        msg = "webhook URL must be https:// (http:// only to loopback: 127.0.0.0/8, ::1, localhost)"
        raise ConfigError(msg)
    return url


# Statuses that say "later" rather than "never": too many requests, and a request timeout.
_RETRY_4XX = frozenset({408, 429})


class WebhookDeliverer:
    """`POST`s the envelope JSON to `url`, signed the Standard Webhooks way with every secret.

    `secrets` is one `whsec_...` secret or several (rotation: each delivery carries one
    signature per secret, so a receiver that knows any one of them verifies it).
    `url` must be https, or http to loopback (`check_webhook_url`).

    2xx is delivered; 410 is `EndpointGone`; 408, 429, 3xx and 5xx, timeouts and
    connection errors are retried (honouring `Retry-After`); any other 4xx is refused.
    One pooled session serves every clinic; each clinic has at most one request in
    flight, so the pool size bounds concurrency across clinics.
    """

    def __init__(
        self,
        url: str,
        secrets: str | Iterable[str] | WebhookSecrets,
        *,
        connect_timeout: float = 5.0,
        total_timeout: float = 15.0,
        max_connections: int = 100,
    ) -> None:
        self.url = check_webhook_url(url)
        # The task endpoint checks answers against the same set (`ClinicConsumer`).
        self.secrets = secrets if isinstance(secrets, WebhookSecrets) else WebhookSecrets(secrets)
        self._timeout = aiohttp.ClientTimeout(total=total_timeout, connect=connect_timeout)
        self.total_timeout = total_timeout
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                headers={"user-agent": "prik-consumer"},
            )

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def deliver(self, delivery: Delivery) -> None:
        if self._session is None:
            msg = "WebhookDeliverer used before start()"
            raise RuntimeError(msg)
        headers = self.secrets.sign(delivery.message.id, delivery.body)
        headers["content-type"] = "application/json"
        if delivery.message.traceparent is not None:
            # W3C Trace Context: the LPS's own tracing continues the sender's trace.
            headers["traceparent"] = delivery.message.traceparent
            if delivery.message.tracestate is not None:
                headers["tracestate"] = delivery.message.tracestate
        try:
            # No redirects: a signed POST must not silently turn into something else.
            async with self._session.post(
                self.url, data=delivery.body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                # Drain (bounded) so the pooled connection can be reused.
                await response.content.read(64 * 1024)
        except TimeoutError:
            msg = "webhook timed out"
            raise RetriableDeliveryError(msg) from None
        except aiohttp.ClientError as exc:
            msg = f"webhook connection failed ({type(exc).__name__})"
            raise RetriableDeliveryError(msg) from None
        _classify(status, retry_after)


def _classify(status: int, retry_after: float | None) -> None:
    if 200 <= status < 300:
        return
    if status == 410:
        msg = "webhook answered 410 Gone"
        raise EndpointGone(msg)
    msg = f"webhook answered HTTP {status}"
    if 400 <= status < 500 and status not in _RETRY_4XX:
        raise DeliveryRefused(msg)
    raise RetriableDeliveryError(msg, retry_after=retry_after)


MessageCallback = Callable[[Message], Awaitable[None]]


class CallbackDeliverer:
    """Delivers by awaiting `fn(message)` in-process, for an LPS that embeds prik.

    `fn` returns to accept; raises `DeliveryRefused` to refuse for good,
    `RetriableDeliveryError` (optionally with `retry_after`) or any other exception
    to be called again later with the same message.
    """

    def __init__(self, fn: MessageCallback) -> None:
        self._fn = fn

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def deliver(self, delivery: Delivery) -> None:
        try:
            await self._fn(delivery.message)
        except (DeliveryRefused, RetriableDeliveryError, asyncio.CancelledError):
            raise
        except Exception as exc:
            # Only the type: an exception's text may quote the message, patient data included.
            msg = f"callback raised {type(exc).__name__}"
            raise RetriableDeliveryError(msg) from exc


class PrintDeliverer:
    """Writes one line per message: time, clinic, type, id. Never `data`, so never a CPR."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        (self._stream or sys.stdout).flush()

    async def deliver(self, delivery: Delivery) -> None:
        message = delivery.message
        expires = f" expires={rfc3339(message.expiresat)}" if message.expiresat is not None else ""
        line = (
            f"{rfc3339(datetime.now(UTC))} clinic={delivery.clinic} type={message.type} "
            f"id={message.id} priority={message.priority.value}{expires}\n"
        )
        stream = self._stream or sys.stdout
        stream.write(line)
        stream.flush()
