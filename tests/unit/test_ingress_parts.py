"""The HTTP ingress's parts: token bucket, Kafka publishers per tenant, stopping, slow bodies,
the benchmark client and the command's refusals."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import RecordMetadata, TopicPartition
from pydantic import SecretStr

from contracts import KafkaError, Message, to_bytes
from prik.bench import IngressBenchOptions, bench_ingress
from prik.settings import KafkaSettings
from producers import PublishResult
from producers.ingress import Credentials, Ingress, IngressServer, PublisherPool, RateLimiter
from tests.unit.clock import Clock
from tests.unit.ingress_support import (
    CLINIC,
    KOMMUNE,
    LPS,
    PASSWORDS,
    PATH,
    STRUCTURED,
    TENANTS,
    TOPICS,
    VIDEO,
    FakeSender,
    auth,
    build,
    notice,
    problem_of,
    write_credentials,
)


@pytest.fixture
def credentials(tmp_path: Path) -> Path:
    return write_credentials(tmp_path)


@pytest.fixture
def sender() -> FakeSender:
    return FakeSender()


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_bench_ingress_counts_every_answer(credentials: Path, sender: FakeSender, clock: Clock) -> None:
    async with TestServer(build(credentials, sender, clock, burst=1_000_000)) as server:
        options = IngressBenchOptions(
            url=str(server.make_url("/")), tenant=VIDEO, password=PASSWORDS[VIDEO], seconds=1.0, concurrency=2
        )
        report = await bench_ingress(options)
    assert report["requests"] == report["statuses"]["202"] == len(sender.sent) > 0
    assert set(report["latency_ms"]) == {"p50", "p99", "max"}


class FakeProducer:
    def __init__(self, kafka: KafkaSettings, fail_start: bool = False) -> None:
        self.kafka = kafka
        self.fail_start = fail_start
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.stopped = False

    async def start(self) -> None:
        if self.fail_start:
            raise KafkaConnectionError

    async def stop(self) -> None:
        self.stopped = True

    async def flush(self) -> None:
        return None

    async def send(self, topic: str, value: bytes, *, key: bytes, headers: Any) -> asyncio.Future[Any]:
        self.sent.append((topic, key, value))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(RecordMetadata(topic, 2, TopicPartition(topic, 2), len(self.sent), -1, 0, 0))
        return future


async def test_publisher_pool_logs_in_as_each_tenant_in_secure_mode(credentials: Path) -> None:
    made: list[FakeProducer] = []

    def factory(kafka: KafkaSettings) -> Any:
        made.append(FakeProducer(kafka))
        return made[-1]

    secure = KafkaSettings(security_protocol="SASL_SSL", username="admin", password=SecretStr("admin-secret"))
    logins = Credentials(credentials, lambda: TENANTS)
    pool = PublisherPool(secure, TOPICS, logins.password, producer_factory=factory)
    video, referral = notice(), notice(KOMMUNE)
    results = await asyncio.gather(
        pool.send(VIDEO, video), pool.send(VIDEO, video), pool.send(KOMMUNE, referral)
    )
    assert [r.topic for r in results] == [
        TOPICS.ingress(VIDEO),
        TOPICS.ingress(VIDEO),
        TOPICS.ingress(KOMMUNE),
    ]
    # One producer per tenant, however many requests raced to start it; each logged in as its tenant.
    assert [(p.kafka.username, p.kafka.secret()) for p in made] == [
        (VIDEO, PASSWORDS[VIDEO]),
        (KOMMUNE, PASSWORDS[KOMMUNE]),
    ]
    assert made[0].sent[0] == (TOPICS.ingress(VIDEO), CLINIC.encode(), to_bytes(video))
    await pool.close()
    assert all(p.stopped for p in made)
    with pytest.raises(KafkaError, match="shutting down"):
        await pool.send(LPS, notice(LPS))


async def test_publisher_pool_tries_again_after_a_failed_start() -> None:
    made: list[FakeProducer] = []

    def factory(kafka: KafkaSettings) -> Any:
        made.append(FakeProducer(kafka, fail_start=not made))
        return made[-1]

    pool = PublisherPool(KafkaSettings(), TOPICS, lambda _tenant: None, producer_factory=factory)
    with pytest.raises(KafkaError):
        await pool.send(VIDEO, notice())
    assert (await pool.send(VIDEO, notice())).offset == 1
    assert made[0].kafka.username is None  # PLAINTEXT: the settings as given
    await pool.close()


class SlowSender(FakeSender):
    """Holds every send until `release` is set, as a slow Kafka acknowledgement would."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = asyncio.Event()
        self.release = asyncio.Event()

    async def send(self, tenant: str, message: Message) -> PublishResult:
        self.waiting.set()
        await self.release.wait()
        return await super().send(tenant, message)


async def test_stopping_lets_a_request_in_flight_finish_then_closes_kafka(
    credentials: Path, clock: Clock
) -> None:
    sender = SlowSender()
    ingress = Ingress(
        tenants=lambda: TENANTS,
        auth=Credentials(credentials, lambda: TENANTS, clock=clock),
        sender=sender,
        limiter=RateLimiter(10.0, 10, clock=clock),
    )
    server = IngressServer(ingress, port=0, grace=30)
    await server.start()
    async with aiohttp.ClientSession() as session:
        request = asyncio.create_task(
            session.post(
                f"{server.url}{PATH}", data=to_bytes(notice()), headers={**STRUCTURED, **auth(VIDEO)}
            )
        )
        await sender.waiting.wait()
        stopping = asyncio.create_task(server.stop())
        await asyncio.sleep(0.2)
        # Kafka is closed only once the request in flight has its answer.
        assert (stopping.done(), sender.closed) == (False, False)
        sender.release.set()
        response = await request
        assert response.status == 202
        response.release()
        await stopping
    assert sender.closed
    assert ingress.stopping


async def test_a_body_that_trickles_in_is_408(credentials: Path, sender: FakeSender, clock: Clock) -> None:
    app = build(credentials, sender, clock, body_seconds=0.3)

    async def trickle() -> AsyncIterator[bytes]:
        yield b"{"
        await asyncio.sleep(5)
        yield b"}"

    async with TestClient(TestServer(app)) as client:
        response = await client.post(PATH, data=trickle(), headers={**STRUCTURED, **auth(VIDEO)})
        await problem_of(response, 408)
    assert sender.sent == []


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "pass --credentials DIR"),
        (
            ["--credentials", "/nonexistent/prik-credentials"],
            "credentials folder /nonexistent/prik-credentials",
        ),
    ],
    ids=["no-credentials", "no-such-folder"],
)
def test_the_command_refuses_to_run_without_a_way_to_authenticate(args: list[str], says: str) -> None:
    tenants = Path(__file__).parent.parent / "data" / "tenants.toml"
    result = subprocess.run(
        [sys.executable, "-m", "prik", "ingress", "run", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PRIK_TENANTS": str(tenants)},
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"prik: error: {says}")
    assert result.stderr.count("\n") == 1


def test_token_bucket() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)
    clock.now += 10
    assert [limiter.take("a") for _ in range(4)][-1] == pytest.approx(0.5)  # never more than the burst
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(0, 1)
