"""The webhook deliverer against the reference LPS, and the runtime's task endpoint, without Kafka."""

from __future__ import annotations

import io
import subprocess
import sys
import uuid
from typing import Any

import aiohttp
import pytest
from standardwebhooks.webhooks import Webhook

from consumers import (
    CallbackDeliverer,
    Delivery,
    DeliveryRefused,
    EndpointGone,
    HealthReport,
    PrintDeliverer,
    ReferenceLps,
    RetriableDeliveryError,
    TaskAnswerRefused,
    WebhookDeliverer,
    build_task_status,
    generate_secret,
    make_webhook,
    sign_headers,
)
from consumers.http_api import ReplayGuard, RuntimeHttp
from contracts import Message, TaskStatus, codec, to_bytes
from producers import video_queue_notice

CLINIC = "123456789012"
CPR = "0101701234"


def _delivery(clinic: str = CLINIC) -> Delivery:
    message = video_queue_notice("minlaege-video", clinic, event="joined", queue_entry_id="q-1", cpr=CPR)
    return Delivery(message, to_bytes(message), clinic, 1)


async def test_webhook_delivery_verifies_and_duplicates_are_dropped() -> None:
    async with ReferenceLps() as lps:
        deliverer = WebhookDeliverer(lps.url, lps.secret)
        await deliverer.start()
        try:
            delivery = _delivery()
            await deliverer.deliver(delivery)
            await deliverer.deliver(delivery)  # a redelivery: same webhook-id
        finally:
            await deliverer.close()
    (got,) = lps.received
    assert lps.duplicates == 1
    assert got.webhook_id == delivery.message.id
    assert got.body == delivery.body
    assert Webhook(lps.secret).verify(got.body, got.headers)["id"] == delivery.message.id


@pytest.mark.parametrize(
    ("status", "error"),
    [(410, EndpointGone), (400, DeliveryRefused), (404, DeliveryRefused), (503, RetriableDeliveryError)],
)
async def test_status_codes_decide_refused_or_retry(status: int, error: type[Exception]) -> None:
    async with ReferenceLps() as lps:
        lps.fail_clinic(CLINIC, status=status, for_seconds=60, retry_after=7)
        deliverer = WebhookDeliverer(lps.url, lps.secret)
        await deliverer.start()
        try:
            with pytest.raises(error) as caught:
                await deliverer.deliver(_delivery())
        finally:
            await deliverer.close()
    assert lps.received == []
    if isinstance(caught.value, RetriableDeliveryError):
        assert caught.value.retry_after == 7
    assert CPR not in str(caught.value)


async def test_429_and_timeouts_and_refused_connections_are_retried() -> None:
    async with ReferenceLps() as lps:
        lps.fail_clinic(CLINIC, status=429, for_seconds=60, retry_after="Thu, 01 Jan 1970 00:00:00 GMT")
        slow = WebhookDeliverer(lps.url, lps.secret, total_timeout=0.3)
        await slow.start()
        try:
            with pytest.raises(RetriableDeliveryError) as caught:
                await slow.deliver(_delivery())
            assert caught.value.retry_after == 0.0
            lps.fail_clinic(CLINIC, status=200, delay=2, for_seconds=60)
            with pytest.raises(RetriableDeliveryError, match="timed out"):
                await slow.deliver(_delivery())
        finally:
            await slow.close()
        url = lps.url
    gone = WebhookDeliverer(url, generate_secret())
    await gone.start()
    try:
        with pytest.raises(RetriableDeliveryError, match="connection"):
            await gone.deliver(_delivery())
    finally:
        await gone.close()


async def test_wrong_secret_is_refused_by_the_lps() -> None:
    async with ReferenceLps() as lps:
        deliverer = WebhookDeliverer(lps.url, generate_secret())
        await deliverer.start()
        try:
            with pytest.raises(DeliveryRefused, match="401"):
                await deliverer.deliver(_delivery())
        finally:
            await deliverer.close()
    assert lps.bad_signatures == 1


async def test_callback_errors_are_typed_without_their_text() -> None:
    async def boom(message: Message) -> None:
        msg = f"bad patient {CPR}"
        raise ValueError(msg)

    with pytest.raises(RetriableDeliveryError) as caught:
        await CallbackDeliverer(boom).deliver(_delivery())
    assert "ValueError" in caught.value.reason
    assert CPR not in caught.value.reason


async def test_print_deliverer_never_prints_data() -> None:
    out = io.StringIO()
    delivery = _delivery()
    await PrintDeliverer(out).deliver(delivery)
    line = out.getvalue()
    assert line.count("\n") == 1
    assert delivery.message.id in line
    assert CLINIC in line
    assert CPR not in line


class _FakeRuntime:
    def __init__(self) -> None:
        self.answers: list[tuple[str, str, str | None]] = []

    def health(self) -> HealthReport:
        return HealthReport(healthy=True, reason="idle", pending=0, progress=None)

    def metrics(self) -> dict[str, object]:
        return {"progress": None, "delivered": 0}

    async def answer(self, task_id: str, status: str, reason: str | None, business: str | None) -> Any:
        if status == "bogus":
            msg = "status must be one of: ..."
            raise TaskAnswerRefused(msg)
        self.answers.append((task_id, status, reason))
        return build_task_status("lps-xmo", uuid.UUID(task_id), TaskStatus(status), reason=reason)


async def test_task_endpoint_authenticates_with_the_webhook_secret() -> None:
    secret = generate_secret()
    runtime = _FakeRuntime()
    server = RuntimeHttp(
        host="127.0.0.1",
        port=0,
        secrets=secret,
        health=runtime.health,
        metrics=runtime.metrics,
        answer=runtime.answer,
    )
    await server.start()
    task_id = str(uuid.uuid4())
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with aiohttp.ClientSession() as http:

            async def post(
                body: bytes, key: str = secret, task: str = task_id, webhook_id: str | None = None
            ) -> tuple[int, Any]:
                headers = sign_headers(make_webhook(key), webhook_id or str(uuid.uuid4()), body)
                async with http.post(f"{base}/tasks/{task}/status", data=body, headers=headers) as r:
                    return r.status, await r.json()

            def answer(status: object, **more: object) -> bytes:
                return codec.dumps({"task_id": task_id, "status": status, **more})

            status, body = await post(answer("accepted", reason="we will"))
            assert status == 202
            assert body["task_id"] == task_id
            assert body["status"] == "accepted"
            assert body["id"]
            assert (await post(answer("accepted"), key=generate_secret()))[0] == 401
            async with http.post(f"{base}/tasks/{task_id}/status", data=answer("accepted")) as r:
                assert r.status == 401
            bad = await post(answer("bogus"))
            assert bad[0] == 400
            assert "status" in bad[1]["error"]
            assert (await post(b"[1]"))[0] == 400
            assert (await post(b"not json"))[0] == 400
            assert (await post(answer(3)))[0] == 400
            async with http.get(f"{base}/health") as r:
                assert r.status == 200
                got = await r.json()
                assert got["healthy"] is True
                assert got["endpoint"] == "enabled"
    finally:
        await server.stop()
    assert runtime.answers == [(task_id, "accepted", "we will")]


async def test_task_endpoint_trusts_the_signed_body_not_the_path_and_refuses_replays() -> None:
    secret = generate_secret()
    runtime = _FakeRuntime()
    server = RuntimeHttp(
        host="127.0.0.1",
        port=0,
        secrets=secret,
        health=runtime.health,
        metrics=runtime.metrics,
        answer=runtime.answer,
    )
    await server.start()
    task_id, other_task = str(uuid.uuid4()), str(uuid.uuid4())
    base = f"http://127.0.0.1:{server.port}"
    signed = codec.dumps({"task_id": task_id, "status": "accepted"})
    headers = sign_headers(make_webhook(secret), "answer-1", signed)
    try:
        async with aiohttp.ClientSession() as http:

            async def post(path_task: str, body: bytes, sent: dict[str, str]) -> tuple[int, Any]:
                async with http.post(f"{base}/tasks/{path_task}/status", data=body, headers=sent) as r:
                    return r.status, await r.json()

            # A signed answer replayed against another task's path: refused, nothing published.
            status, body = await post(other_task, signed, headers)
            assert status == 400
            assert "does not match" in body["error"]
            no_id = codec.dumps({"status": "accepted"})
            status, body = await post(task_id, no_id, sign_headers(make_webhook(secret), "answer-0", no_id))
            assert status == 400
            assert "task_id" in body["error"]
            # The refused request did not use up its webhook-id: sent as signed, it goes through once.
            assert (await post(task_id, signed, headers))[0] == 202
            status, body = await post(task_id, signed, headers)
            assert status == 409
            assert "already used" in body["error"]
            upper = codec.dumps({"task_id": task_id.upper(), "status": "received"})
            assert (await post(task_id, upper, sign_headers(make_webhook(secret), "answer-2", upper)))[
                0
            ] == 202
    finally:
        await server.stop()
    assert runtime.answers == [(task_id, "accepted", None), (task_id.upper(), "received", None)]


async def test_task_endpoint_accepts_either_active_secret_during_a_rotation() -> None:
    old, new, unrelated = generate_secret(), generate_secret(), generate_secret()
    runtime = _FakeRuntime()
    server = RuntimeHttp(
        host="127.0.0.1",
        port=0,
        secrets=[old, new],
        health=runtime.health,
        metrics=runtime.metrics,
        answer=runtime.answer,
    )
    await server.start()
    task_id = str(uuid.uuid4())
    url = f"http://127.0.0.1:{server.port}/tasks/{task_id}/status"
    try:
        async with aiohttp.ClientSession() as http:

            async def post(signer: Webhook, status: str) -> int:
                body = codec.dumps({"task_id": task_id, "status": status})
                # An LPS signs with the one secret it knows, through the library itself.
                headers = sign_headers(signer, str(uuid.uuid4()), body)
                async with http.post(url, data=body, headers=headers) as r:
                    return r.status

            assert await post(Webhook(old), "received") == 202
            assert await post(Webhook(new), "accepted") == 202
            assert await post(Webhook(unrelated), "rejected") == 401
    finally:
        await server.stop()
    assert [status for _, status, _ in runtime.answers] == ["received", "accepted"]


async def test_task_endpoint_without_secrets_is_disabled() -> None:
    runtime = _FakeRuntime()
    server = RuntimeHttp(
        host="127.0.0.1",
        port=0,
        secrets=[],
        health=runtime.health,
        metrics=runtime.metrics,
        answer=runtime.answer,
    )
    await server.start()
    body = codec.dumps({"task_id": str(uuid.uuid4()), "status": "accepted"})
    headers = sign_headers(make_webhook(generate_secret()), "answer-1", body)
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"http://127.0.0.1:{server.port}/tasks/x/status", data=body, headers=headers) as r,
        ):
            assert r.status == 403
    finally:
        await server.stop()
    assert runtime.answers == []


def test_replay_guard_forgets_ids_once_their_signature_expired_and_stays_bounded() -> None:
    guard = ReplayGuard(tolerance=300, max_ids=2)
    assert guard.claim("a", timestamp=1000, now=1000) is True
    assert guard.claim("a", timestamp=1000, now=1200) is False
    # A timestamp 5 minutes ahead is still accepted by verification: the id is kept that long too.
    assert guard.claim("b", timestamp=1500, now=1200) is True
    assert guard.claim("c", timestamp=1200, now=1200) is None  # full: refused, not forgotten early
    assert guard.claim("a", timestamp=1000, now=1302) is True  # a's signature no longer verifies
    assert guard.claim("b", timestamp=1500, now=1700) is False
    assert guard.claim("b", timestamp=1500, now=1802) is True
    guard.release("b")
    assert guard.claim("b", timestamp=1802, now=1802) is True
    assert len(guard) == 1


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ([], "exactly one"),
        (["--print", "--webhook", "http://x/"], "exactly one"),
        (["--webhook", "https://x/"], "--secret"),
        (["--webhook", "https://x/", "--secret", "plain"], "whsec_"),
        (["--webhook", "ftp://x/", "--secret", generate_secret()], "https"),
        (["--webhook", "http://x/", "--secret", generate_secret()], "https"),
        (["--print", "--max-retry-time", "soon"], "duration"),
    ],
)
def test_cli_usage_errors_exit_2_with_one_line(args: list[str], needle: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "prik", "consumer", "run", "--lps", "lps-xmo", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "", "PRIK_KAFKA__BOOTSTRAP": "127.0.0.1:1"},
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert needle in lines[0], done.stderr
