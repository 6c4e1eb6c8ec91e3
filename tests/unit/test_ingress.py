"""The HTTP ingress in process: every answer, both bindings, and the hostile corpus over HTTP."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from contracts import KafkaError, codec, to_bytes
from producers import video_queue_notice
from producers.build import referral_status_notice
from producers.ingress import basic_login, openapi_document
from tests.hostile.corpus import CPRS, ROUTED, hostile_records
from tests.hostile.http import as_http, echoes, expected_status
from tests.unit.clock import Clock
from tests.unit.ingress_support import (
    CLINIC,
    KOMMUNE,
    PASSWORDS,
    PATH,
    STRUCTURED,
    TENANTS,
    TOPICS,
    VIDEO,
    Client,
    FakeSender,
    auth,
    binary_request,
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


@pytest.fixture
async def client(credentials: Path, sender: FakeSender, clock: Clock) -> AsyncIterator[Client]:
    async with TestClient(TestServer(build(credentials, sender, clock))) as c:
        yield c


# --- success, both bindings ---------------------------------------------------------------


async def test_structured_event_is_published_as_the_tenant_and_answered_202(
    client: Client, sender: FakeSender
) -> None:
    message = notice()
    response = await client.post(PATH, data=to_bytes(message), headers={**STRUCTURED, **auth(VIDEO)})
    assert response.status == 202
    assert await response.json() == {
        "id": message.id,
        "topic": TOPICS.ingress(VIDEO),
        "partition": 0,
        "offset": 0,
    }
    assert sender.sent == [(VIDEO, message)]


async def test_binary_event_is_the_same_message(client: Client, sender: FakeSender) -> None:
    message = notice(subject="queue-7")
    headers, body = binary_request(message)
    response = await client.post(PATH, data=body, headers={**headers, **auth(VIDEO)})
    assert response.status == 202, await response.text()
    assert sender.sent == [(VIDEO, message)]


async def test_binary_header_values_are_percent_decoded(client: Client, sender: FakeSender) -> None:
    message = notice(subject="kø 7")
    headers, body = binary_request(message)
    headers["ce-subject"] = "k%C3%B8%207"
    response = await client.post(PATH, data=body, headers={**headers, **auth(VIDEO)})
    assert response.status == 202, await response.text()
    assert sender.sent[0][1].subject == "kø 7"


async def test_charset_utf8_is_accepted(client: Client, sender: FakeSender) -> None:
    headers = {"Content-Type": "application/cloudevents+json; charset=UTF-8", **auth(VIDEO)}
    response = await client.post(PATH, data=to_bytes(notice()), headers=headers)
    assert response.status == 202


# --- 401 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        auth(VIDEO, "wrong"),
        auth("nobody-here", "x"),
        {"Authorization": "Bearer abc"},
        {"Authorization": "Basic !!!"},
        {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
        {"Authorization": "Basic " + "A" * 5000},
    ],
    ids=["none", "wrong-password", "unknown-tenant", "bearer", "bad-base64", "no-colon", "huge"],
)
async def test_no_valid_login_is_401_with_a_challenge(
    client: Client, sender: FakeSender, headers: dict[str, str]
) -> None:
    response = await client.post(PATH, data=to_bytes(notice()), headers={**STRUCTURED, **headers})
    await problem_of(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert sender.sent == []


async def test_a_tenant_without_a_password_file_cannot_log_in(client: Client, credentials: Path) -> None:
    (credentials / f"{VIDEO}.password").unlink()
    response = await client.post(PATH, data=to_bytes(notice()), headers={**STRUCTURED, **auth(VIDEO)})
    await problem_of(response, 401)


async def test_a_rotated_password_counts_once_the_file_changed(
    client: Client, credentials: Path, clock: Clock
) -> None:
    headers = {**STRUCTURED, **auth(VIDEO)}
    assert (await client.post(PATH, data=to_bytes(notice()), headers=headers)).status == 202
    (credentials / f"{VIDEO}.password").write_text("rotated\n")
    clock.now += 5
    await problem_of(await client.post(PATH, data=to_bytes(notice()), headers=headers), 401)
    fresh = {**STRUCTURED, **auth(VIDEO, "rotated")}
    assert (await client.post(PATH, data=to_bytes(notice()), headers=fresh)).status == 202


def test_basic_login_reads_only_basic() -> None:
    assert basic_login("Basic " + base64.b64encode(b"a-b:p:q").decode()) == ("a-b", "p:q")
    assert basic_login("basic " + base64.b64encode("æ:ø".encode()).decode()) == ("æ", "ø")
    assert basic_login("Basic " + base64.b64encode(b"\xff:x").decode()) is None
    assert basic_login(None) is None


# --- 403 ---------------------------------------------------------------------------------------


async def test_a_source_that_is_not_the_tenants_own_is_403(client: Client, sender: FakeSender) -> None:
    response = await client.post(PATH, data=to_bytes(notice(VIDEO)), headers={**STRUCTURED, **auth(KOMMUNE)})
    body = await problem_of(response, 403)
    assert body["stage"] == "authenticate"
    assert "urn:prik:kommune-0101" in body["detail"]
    assert sender.sent == []


async def test_a_type_the_tenant_may_not_send_is_403(client: Client, sender: FakeSender) -> None:
    message = notice(KOMMUNE)  # kommune-0101 may not send video-queue notices
    response = await client.post(PATH, data=to_bytes(message), headers={**STRUCTURED, **auth(KOMMUNE)})
    body = await problem_of(response, 403)
    assert body["stage"] == "authorise"
    assert sender.sent == []


# --- 400 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{not json",
        b"[1, 2]",
        to_bytes(notice()).replace(b'"source"', b'"recipient":"111111111111","source"', 1),
        to_bytes(notice()).replace(b'"event":"joined"', b'"event":"nope"'),
        to_bytes(notice()).replace(b'"specversion":"1.0",', b""),
    ],
    ids=["empty", "not-json", "array", "duplicated-key", "bad-enum", "no-specversion"],
)
async def test_an_invalid_message_is_400_with_a_reason_that_quotes_nothing(
    client: Client, sender: FakeSender, body: bytes
) -> None:
    response = await client.post(PATH, data=body, headers={**STRUCTURED, **auth(VIDEO)})
    problem = await problem_of(response, 400)
    assert problem["stage"] in {"parse", "validate"}
    text = await response.text()
    assert not [c for c in CPRS if c in text]
    assert "nope" not in text
    assert sender.sent == []


async def test_binary_mode_errors_are_400(client: Client) -> None:
    headers, body = binary_request(notice())
    twice = [*headers.items(), ("ce-id", "again")]
    response = await client.post(PATH, data=body, headers=[*twice, *auth(VIDEO).items()])
    assert "appears twice" in (await problem_of(response, 400))["detail"]
    headers["ce-secret"] = CPRS[1]
    response = await client.post(PATH, data=body, headers={**headers, **auth(VIDEO)})
    await problem_of(response, 400)
    assert CPRS[1] not in await response.text()


# --- 413 ---------------------------------------------------------------------------------------


async def test_a_declared_length_over_the_limit_is_413_before_the_body_is_read(
    client: Client, sender: FakeSender
) -> None:
    body = b" " * (64 * 1024 + 1)
    response = await client.post(PATH, data=body, headers={**STRUCTURED, **auth(VIDEO)})
    await problem_of(response, 413)


async def test_a_streamed_body_over_the_limit_is_413(client: Client, sender: FakeSender) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b" " * 4096

    response = await client.post(PATH, data=chunks(), headers={**STRUCTURED, **auth(VIDEO)})
    await problem_of(response, 413)
    assert sender.sent == []


async def test_exactly_the_limit_is_accepted(client: Client, sender: FakeSender) -> None:
    value = to_bytes(notice())
    value += b" " * (64 * 1024 - len(value))
    response = await client.post(PATH, data=value, headers={**STRUCTURED, **auth(VIDEO)})
    assert response.status == 202


async def test_binary_data_that_would_make_an_event_over_the_limit_is_413(
    credentials: Path, sender: FakeSender, clock: Clock
) -> None:
    # The router reads the whole event the ingress publishes, attributes and all.
    app = build(credentials, sender, clock, max_bytes=1024)
    message = video_queue_notice(
        VIDEO, CLINIC, event="joined", queue_entry_id="q-1", consultation_url="https://v.example/" + "a" * 800
    )
    headers, body = binary_request(message)
    assert len(body) <= 1024 < len(to_bytes(message))
    async with TestClient(TestServer(app)) as client:
        response = await client.post(PATH, data=body, headers={**headers, **auth(VIDEO)})
        await problem_of(response, 413)
    assert sender.sent == []


# --- 415 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/json"},
        {"Content-Type": "application/cloudevents-batch+json"},
        {"Content-Type": "application/cloudevents+json; charset=latin-1"},
        {"Content-Type": "text/plain", "ce-specversion": "1.0"},
    ],
    ids=["none", "text", "json-without-ce", "batch", "latin-1", "binary-text"],
)
async def test_an_unknown_content_type_is_415(
    client: Client, sender: FakeSender, headers: dict[str, str]
) -> None:
    response = await client.post(PATH, data=to_bytes(notice()), headers={**headers, **auth(VIDEO)})
    await problem_of(response, 415)
    assert sender.sent == []


# --- 429 ---------------------------------------------------------------------------------------


async def test_over_the_tenants_rate_is_429_with_retry_after(
    credentials: Path, sender: FakeSender, clock: Clock
) -> None:
    async with TestClient(TestServer(build(credentials, sender, clock, burst=2))) as client:
        headers = {**STRUCTURED, **auth(VIDEO)}
        for _ in range(2):
            assert (await client.post(PATH, data=to_bytes(notice()), headers=headers)).status == 202
        response = await client.post(PATH, data=to_bytes(notice()), headers=headers)
        await problem_of(response, 429)
        assert int(response.headers["Retry-After"]) >= 1
        # Another tenant has its own bucket.
        referral = referral_status_notice(
            KOMMUNE,
            CLINIC,
            referral_id="r-1",
            municipality_code="101",
            offer="TeleKOL",
            status="accepted",
            cpr=CPRS[0],
        )
        other = {**STRUCTURED, **auth(KOMMUNE)}
        assert (await client.post(PATH, data=to_bytes(referral), headers=other)).status == 202
        clock.now += 0.1  # 10 a second: one token back
        assert (await client.post(PATH, data=to_bytes(notice()), headers=headers)).status == 202


# --- 503, 404, 405, health, OpenAPI ---------------------------------------------------------------


async def test_kafka_not_acknowledging_is_503_with_retry_after(client: Client, sender: FakeSender) -> None:
    sender.fail = KafkaError("publishing to x: KafkaTimeoutError")
    response = await client.post(PATH, data=to_bytes(notice()), headers={**STRUCTURED, **auth(VIDEO)})
    await problem_of(response, 503)
    assert response.headers["Retry-After"] == "1"


async def test_other_paths_and_methods_are_problems_too(client: Client) -> None:
    await problem_of(await client.get("/nowhere"), 404)
    response = await client.get(PATH)
    await problem_of(response, 405)
    assert "POST" in response.headers["Allow"]


async def test_health_and_openapi(client: Client) -> None:
    response = await client.get("/health")
    assert (response.status, await response.json()) == (200, {"status": "ok"})
    document = await (await client.get("/openapi.json")).json()
    assert document["openapi"] == "3.1.0"
    assert document == codec.loads(codec.dumps(openapi_document(max_bytes=64 * 1024, rate=10.0)))
    answers = set(document["paths"]["/v1/messages"]["post"]["responses"])
    assert answers == {"202", "400", "401", "403", "408", "413", "415", "429", "503"}


# --- the hostile corpus over HTTP -------------------------------------------------------------------


async def test_hostile_corpus_gets_the_routers_verdict_and_never_a_5xx_or_an_echo(client: Client) -> None:
    records = hostile_records(11, 400, datetime(2026, 11, 26, 9, 30, tzinfo=UTC))
    checked = 0
    for record in records:
        case = as_http(record)
        headers = [*case.headers, *auth(record.tenant, PASSWORDS.get(record.tenant, "x")).items()]
        response = await client.post(PATH, data=case.body, headers=headers)
        answer = await response.read()
        where = f"{record.category} {record.note}"
        assert response.status < 500, where
        assert response.status in {202, 400, 401, 403, 413, 415}, where  # never 408: bodies are whole
        assert echoes(case, answer) == [], where
        if case.lossless:
            checked += 1
            assert response.status == expected_status(record, TENANTS), where
        if record.expect == {ROUTED} and case.lossless:
            assert response.status == 202, where
    assert checked > len(records) // 2
    # The service is still up.
    assert (await client.get("/health")).status == 200
