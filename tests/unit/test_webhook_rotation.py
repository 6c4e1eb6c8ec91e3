"""Secret rotation through the real `WebhookDeliverer`: receivers that know either secret verify.

Each receiver here is a small aiohttp server on loopback that checks requests with
the `standardwebhooks` library alone (`Webhook(secret).verify`), as an LPS would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from consumers import (
    Delivery,
    DeliveryRefused,
    ReferenceLps,
    WebhookDeliverer,
    generate_secret,
)
from consumers.serving import serve
from contracts import ConfigError, to_bytes
from producers import video_queue_notice

CLINIC = "123456789012"


def _delivery() -> Delivery:
    message = video_queue_notice(
        "minlaege-video", CLINIC, event="joined", queue_entry_id="q-1", cpr="0101701234"
    )
    return Delivery(message, to_bytes(message), CLINIC, 1)


@dataclass
class Receiver:
    """What one receiver saw: every request's headers, and how it answered."""

    url: str = ""
    verified: list[str] = field(default_factory=list)
    refused: int = 0
    headers: list[dict[str, str]] = field(default_factory=list)


@asynccontextmanager
async def receiver(secret: str) -> AsyncIterator[Receiver]:
    """An LPS that knows only `secret` and verifies with the library: 204, or 401."""
    seen = Receiver()
    verifier = Webhook(secret)

    async def post(request: web.Request) -> web.Response:
        body = await request.read()
        seen.headers.append({name.lower(): value for name, value in request.headers.items()})
        try:
            envelope = verifier.verify(body, dict(request.headers))
        except WebhookVerificationError:
            seen.refused += 1
            return web.Response(status=401)
        seen.verified.append(envelope["id"])
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", post)
    runner, port = await serve(app, "127.0.0.1", 0)
    seen.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield seen
    finally:
        await runner.cleanup()


async def _deliver(url: str, secrets: list[str], delivery: Delivery) -> None:
    deliverer = WebhookDeliverer(url, secrets)
    await deliverer.start()
    try:
        await deliverer.deliver(delivery)
    finally:
        await deliverer.close()


async def test_during_the_overlap_both_an_old_and_a_new_receiver_verify() -> None:
    old, new, unrelated = generate_secret(), generate_secret(), generate_secret()
    delivery = _delivery()
    async with receiver(old) as knows_old, receiver(new) as knows_new, receiver(unrelated) as stranger:
        await _deliver(knows_old.url, [old, new], delivery)
        await _deliver(knows_new.url, [old, new], delivery)
        with pytest.raises(DeliveryRefused, match="401"):
            await _deliver(stranger.url, [old, new], delivery)
    assert knows_old.verified == [delivery.message.id]
    assert knows_new.verified == [delivery.message.id]
    assert stranger.verified == []
    assert stranger.refused == 1
    # The Standard Webhooks form: one `v1,` signature per secret, space-separated.
    signature = knows_old.headers[0]["webhook-signature"]
    parts = signature.split(" ")
    assert len(parts) == 2
    assert all(part.startswith("v1,") for part in parts)
    # What the stranger refused was the very request the others accepted.
    (sent,) = stranger.headers
    assert sent["webhook-id"] == delivery.message.id
    assert len(sent["webhook-signature"].split(" ")) == 2


async def test_a_rotation_step_by_step_never_leaves_a_receiver_without_a_verifiable_signature() -> None:
    old, new = generate_secret(), generate_secret()
    async with receiver(old) as knows_old, receiver(new) as knows_new:
        # Before: only the old secret. A receiver already on the new one refuses.
        await _deliver(knows_old.url, [old], _delivery())
        with pytest.raises(DeliveryRefused, match="401"):
            await _deliver(knows_new.url, [old], _delivery())
        # Overlap: both verify, whichever the LPS has switched to.
        await _deliver(knows_old.url, [old, new], _delivery())
        await _deliver(knows_new.url, [old, new], _delivery())
        # After: the old secret is retired; only a receiver on the new one verifies.
        await _deliver(knows_new.url, [new], _delivery())
        with pytest.raises(DeliveryRefused, match="401"):
            await _deliver(knows_old.url, [new], _delivery())
    assert len(knows_old.verified) == 2
    assert knows_old.refused == 1
    assert len(knows_new.verified) == 2
    assert knows_new.refused == 1


async def test_the_reference_lps_accepts_either_of_its_secrets() -> None:
    old, new = generate_secret(), generate_secret()
    async with ReferenceLps([old, new]) as lps:
        assert lps.secrets == (old, new)
        assert lps.secret == old
        await _deliver(lps.url, [old], _delivery())
        await _deliver(lps.url, [new], _delivery())
        with pytest.raises(DeliveryRefused, match="401"):
            await _deliver(lps.url, [generate_secret()], _delivery())
    assert len(lps.received) == 2
    assert lps.bad_signatures == 1


async def test_the_same_secret_twice_signs_once() -> None:
    secret = generate_secret()
    async with receiver(secret) as lps:
        await _deliver(lps.url, [secret, secret], _delivery())
    assert lps.headers[0]["webhook-signature"].count("v1,") == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://127.8.9.10/hook",
        "http://[::1]:8080/hook",
        "http://localhost:8080/hook",
        "http://LOCALHOST/hook",
        "https://lps.example/prik",
        "https://user:pass@lps.example:8443/prik?x=1",
    ],
)
def test_https_or_loopback_urls_are_accepted(url: str) -> None:
    assert WebhookDeliverer(url, generate_secret()).url == url


@pytest.mark.parametrize(
    "url",
    [
        "http://example.org/hook",
        "http://127.0.0.1@example.org/hook",  # the host is example.org
        "http://127.0.0.1.nip.io/hook",
        "http://localhost.example.org/hook",
        "http://10.0.0.1/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "ftp://127.0.0.1/hook",
        "https:///hook",
        "http://example.org\\@127.0.0.1/hook",
        "/hook",
        "",
    ],
)
def test_other_urls_are_refused_without_being_quoted(url: str) -> None:
    with pytest.raises(ConfigError, match="https://") as caught:
        WebhookDeliverer(url, generate_secret())
    message = str(caught.value)
    assert "\n" not in message
    assert "example.org" not in message


async def test_a_traced_message_carries_its_traceparent_to_the_lps() -> None:
    secret = generate_secret()
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    plain = _delivery()
    traced_message = plain.message.model_copy(update={"traceparent": traceparent, "tracestate": "prik=1"})
    traced = Delivery(traced_message, to_bytes(traced_message), CLINIC, 1)
    async with receiver(secret) as lps:
        await _deliver(lps.url, [secret], traced)
        await _deliver(lps.url, [secret], plain)
    with_trace, without_trace = lps.headers
    assert with_trace["traceparent"] == traceparent
    assert with_trace["tracestate"] == "prik=1"
    assert "traceparent" not in without_trace
    # The body the signature covers carries it too: the envelope is what was validated.
    assert lps.verified == [plain.message.id, plain.message.id]
