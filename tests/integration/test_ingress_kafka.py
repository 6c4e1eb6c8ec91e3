"""The HTTP ingress on a real broker: POST -> Kafka (acknowledged) -> router -> consumer -> LPS,
every refusal on the real thing, a clean SIGTERM, and schemathesis against its OpenAPI document."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from broker.tenancy import admission_refusal
from consumers import Backoff, ClinicConsumer, ReferenceLps, WebhookDeliverer
from contracts import Message, Outcome, Receipt, parse, to_binary, to_bytes
from producers import read_records, read_replies, video_queue_notice
from producers.keys import key_of
from tests.hostile.corpus import CPRS

from .conftest import CLINIC, World
from .ingress_process import IngressProcess, write_passwords

pytestmark = pytest.mark.kafka

VIDEO, KOMMUNE, LPS, OTHER_LPS = "minlaege-video", "kommune-0101", "lps-xmo", "lps-other"
PROBLEM = "application/problem+json"
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)


@pytest.fixture
def passwords(world: World) -> dict[str, str]:
    return write_passwords(world.root / "credentials", list(world.tenants.ids))


def start_ingress(world: World, env: dict[str, str] | None = None) -> Iterator[IngressProcess]:
    process = IngressProcess(world, world.root / "credentials", env)
    try:
        yield process
    finally:
        process.kill()


@pytest.fixture
def ingress(world: World, passwords: dict[str, str]) -> Iterator[IngressProcess]:
    # A small bucket for lps-other's 429; the other tenants send far less than its burst.
    yield from start_ingress(world, {"PRIK_INGRESS_RATE": "0.5", "PRIK_INGRESS_BURST": "10"})


@pytest.fixture
async def lps() -> AsyncIterator[ReferenceLps]:
    async with ReferenceLps() as server:
        yield server


@pytest.fixture
async def consumer(world: World, lps: ReferenceLps) -> AsyncIterator[ClinicConsumer]:
    runtime = ClinicConsumer(
        world.kafka,
        world.topics,
        LPS,
        WebhookDeliverer(lps.url, lps.secret, total_timeout=5),
        backoff=Backoff(base=0.2, cap=1.0),
        http_port=0,
        stop_grace=2.0,
    )
    async with runtime:
        yield runtime


def notice(tenant: str = VIDEO) -> Message:
    return video_queue_notice(tenant, CLINIC, event="joined", queue_entry_id="q-1", cpr=CPRS[0])


async def post(
    url: str, tenant: str, password: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], Any]:
    given = headers if headers is not None else {"Content-Type": "application/cloudevents+json"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{url}/v1/messages", data=body, headers={**given, "Authorization": basic(tenant, password)}
        ) as response,
    ):
        answer = await response.json(content_type=None)
        return response.status, dict(response.headers), answer


def basic(tenant: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{tenant}:{password}".encode()).decode()


async def eventually(done: Callable[[], Awaitable[bool]], within: float = 90) -> None:
    deadline = time.monotonic() + within
    while True:
        if await done() or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.3)


def binary(message: Message) -> tuple[dict[str, str], bytes]:
    body, headers = to_binary(message)
    http = {
        "Content-Type" if name == "content-type" else "ce-" + name.removeprefix("ce_"): value.decode()
        for name, value in headers
    }
    return http, body


@pytest.mark.usefixtures("router", "consumer")
async def test_structured_and_binary_reach_the_lps_and_the_receipt_follows(
    world: World, passwords: dict[str, str], ingress: IngressProcess, lps: ReferenceLps
) -> None:
    structured, in_binary = notice(), notice()
    status, _, first = await post(ingress.url, VIDEO, passwords[VIDEO], to_bytes(structured))
    assert status == 202, first
    headers, body = binary(in_binary)
    status, _, second = await post(ingress.url, VIDEO, passwords[VIDEO], body, headers)
    assert status == 202, second

    # The answers name where Kafka stored each message.
    stored = {
        (r.topic, r.partition, r.offset): r
        async for r in read_records(world.kafka, world.topics.ingress(VIDEO))
    }
    for sent, answer in ((structured, first), (in_binary, second)):
        assert set(answer) == {"id", "topic", "partition", "offset"}
        assert answer["id"] == sent.id
        record = stored[answer["topic"], answer["partition"], answer["offset"]]
        # Exactly the record the SDK's Publisher writes: canonical bytes, its key, its one header.
        assert record.value == to_bytes(sent)
        assert record.key == key_of(sent).encode()
        assert list(record.headers) == [("content-type", b"application/cloudevents+json")]

    # The router routes them as usual; the LPS gets both, the sender a `delivered` receipt each.
    ids = {structured.id, in_binary.id}

    async def delivered() -> bool:
        return ids <= lps.ids()

    await eventually(delivered)
    assert ids <= lps.ids()
    receipts: dict[str, Receipt] = {}

    async def receipted() -> bool:
        replies = read_replies(world.kafka, world.topics, VIDEO)
        receipts.update({m.data.message_id: m async for m in replies if isinstance(m, Receipt)})
        return len(receipts) >= 2

    await eventually(receipted)
    assert {i: r.data.outcome for i, r in receipts.items()} == {
        structured.id: Outcome.DELIVERED,
        in_binary.id: Outcome.DELIVERED,
    }


async def test_every_refusal_on_the_real_thing_and_nothing_refused_reaches_kafka(
    world: World, passwords: dict[str, str], ingress: IngressProcess
) -> None:
    url, video = ingress.url, passwords[VIDEO]
    cases = {
        400: (VIDEO, video, to_bytes(notice()).replace(b'"joined"', b'"sideways"'), None),
        401: (VIDEO, "wrong", to_bytes(notice()), None),
        403: (KOMMUNE, passwords[KOMMUNE], to_bytes(notice()), None),
        413: (VIDEO, video, b" " * (64 * 1024 + 1), None),
        415: (VIDEO, video, to_bytes(notice()), {"Content-Type": "text/plain"}),
    }
    for expected, (tenant, password, body, headers) in cases.items():
        status, answer_headers, answer = await post(url, tenant, password, body, headers)
        assert status == expected, answer
        assert answer_headers["Content-Type"] == PROBLEM
        assert answer["status"] == expected
        assert CPRS[0] not in str(answer)
        if expected == 401:
            assert answer_headers["WWW-Authenticate"].startswith("Basic")
    statuses = []
    for _ in range(15):
        status, answer_headers, _ = await post(url, OTHER_LPS, passwords[OTHER_LPS], b"{}")
        statuses.append(status)
        if status == 429:
            assert int(answer_headers["Retry-After"]) >= 1
    assert 429 in statuses
    assert set(statuses) == {400, 429}
    for tenant in (VIDEO, KOMMUNE, OTHER_LPS):
        assert [r async for r in read_records(world.kafka, world.topics.ingress(tenant))] == []
    async with aiohttp.ClientSession() as session, session.get(f"{url}/health") as response:
        assert response.status == 200


async def test_sigterm_stops_it_cleanly(
    world: World, passwords: dict[str, str], ingress: IngressProcess
) -> None:
    status, _, _ = await post(ingress.url, VIDEO, passwords[VIDEO], to_bytes(notice()))
    assert status == 202
    assert ingress.terminate() == 0
    errors = ingress.stderr.read_text()
    assert "Traceback" not in errors
    assert "Unclosed" not in errors
    assert "ingress.stopped" in errors


@pytest.fixture
def roomy_ingress(world: World, passwords: dict[str, str]) -> Iterator[IngressProcess]:
    yield from start_ingress(world, {"PRIK_INGRESS_BURST": "100000"})


async def test_schemathesis_finds_no_server_error_and_every_answer_matches_the_document(
    world: World, passwords: dict[str, str], roomy_ingress: IngressProcess, tmp_path: Path
) -> None:
    schemathesis = Path(sys.executable).parent / "schemathesis"
    result = await asyncio.to_thread(
        subprocess.run,
        [
            str(schemathesis),
            "run",
            f"{roomy_ingress.url}/openapi.json",
            "--auth",
            f"{VIDEO}:{passwords[VIDEO]}",
            "--checks",
            ",".join(CHECKS),
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--workers",
            "1",
            "--request-timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert " passed" in result.stdout
    assert "failed" not in result.stdout.split("Test cases:")[-1]
    # Not only refusals: the documented example and generated valid events got their 202, and
    # every one of them is on Kafka as a record the router accepts from this tenant.
    stored = [r async for r in read_records(world.kafka, world.topics.ingress(VIDEO))]
    assert stored, "schemathesis never got a 202: the run only exercised refusals"
    for record in stored:
        message = parse(record.value, record.headers)
        assert admission_refusal(message, VIDEO, world.tenants) is None
