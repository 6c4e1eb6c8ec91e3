"""`prik.conformance` in-process: the reference LPS passes; careless, slow, throttled, gone ones do not."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web

from consumers import ReferenceLps, WebhookSecrets, generate_secret, verify_signature
from consumers.serving import serve
from consumers.task_answers import TaskAnswerer
from contracts import ConfigError, MessageType, TaskStatus, parse
from prik.conformance import (
    DELIVERED_TYPES,
    SCENARIOS,
    SUMMARIES,
    ConformanceRunner,
    Expect,
    Kit,
    Report,
    Result,
    TaskApiStandIn,
    parse_task_api,
    sample_message,
    shown_url,
)

CLINIC = "123456789012"
SIGNATURE_REFUSALS = {
    "signature-wrong-secret",
    "signature-missing-webhook-id",
    "signature-missing-webhook-timestamp",
    "signature-missing-webhook-signature",
    "signature-tampered-body",
    "signature-tampered-id",
    "signature-stale-timestamp",
    "signature-future-timestamp",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def endpoint(handler: Handler) -> AsyncIterator[str]:
    """A throwaway webhook endpoint answering with `handler`; yields its URL."""
    app = web.Application()
    app.router.add_post("/webhook", handler)
    runner, port = await serve(app, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}/webhook"
    finally:
        await runner.cleanup()


def by_name(report: Report) -> dict[str, tuple[Result, str]]:
    return {outcome.name: (outcome.result, outcome.reason) for outcome in report.outcomes}


async def run(url: str, secret: str, **kwargs: object) -> Report:
    runner = ConformanceRunner(url, WebhookSecrets(secret), clinic=CLINIC, **kwargs)  # type: ignore[arg-type]
    return await runner.run()


# --- pure: what the probes are ------------------------------------------------------------


def test_every_scenario_signs_what_it_means_to() -> None:
    """Probes expected to be accepted verify under the endpoint's secret; those to be refused do not."""
    secret = generate_secret()
    kit = Kit(WebhookSecrets(secret), CLINIC)
    now = datetime.now(UTC)
    names = [scenario.name for scenario in SCENARIOS]
    assert len(names) == len(set(names))
    assert set(names) >= SIGNATURE_REFUSALS
    for scenario in SCENARIOS:
        for probe in scenario.probes(kit):
            verifies = verify_signature(WebhookSecrets(secret), probe.body, probe.sign(now))
            assert verifies is (probe.expect is Expect.ACCEPT), scenario.name
            assert (scenario.name in SIGNATURE_REFUSALS) is (probe.expect is Expect.REFUSE)


def test_deliveries_are_real_prik_messages_of_every_delivered_type() -> None:
    kit = Kit(WebhookSecrets(generate_secret()), CLINIC)
    seen = set()
    for scenario in SCENARIOS:
        if scenario.name.startswith("deliver-"):
            (probe,) = scenario.probes(kit)
            message = parse(probe.body)
            assert message.recipient == CLINIC
            seen.add(message.type)
    assert seen == set(DELIVERED_TYPES)
    assert MessageType.RECEIPT not in seen  # receipts go to replies topics, never to a webhook
    with pytest.raises(ValueError, match="never receives"):
        sample_message(MessageType.RECEIPT, CLINIC)


def test_duplicate_scenario_repeats_the_id_with_a_fresh_signature() -> None:
    kit = Kit(WebhookSecrets(generate_secret()), CLINIC)
    (scenario,) = [s for s in SCENARIOS if s.name == "duplicate-webhook-id"]
    first, again = scenario.probes(kit)
    early, late = datetime(2026, 11, 26, 9, 0, tzinfo=UTC), datetime(2026, 11, 26, 9, 1, tzinfo=UTC)
    assert first.body == again.body
    assert first.sign(early)["webhook-id"] == again.sign(late)["webhook-id"]
    assert first.sign(early)["webhook-signature"] != again.sign(late)["webhook-signature"]


def test_task_api_url_must_be_http_host_port() -> None:
    assert parse_task_api("http://127.0.0.1:8092") == ("127.0.0.1", 8092)
    assert parse_task_api("http://localhost:8092/") == ("localhost", 8092)
    for bad in (
        "https://x:1",
        "http://127.0.0.1",
        "http://h:1/tasks",
        "ftp://h:1",
        "nonsense",
        "http://u:p@h:1",
    ):
        with pytest.raises(ConfigError, match="--task-api must be"):
            parse_task_api(bad)


def test_shown_url_leaves_out_credentials() -> None:
    shown = shown_url("https://user:pw@lps.example/hook?token=abc#x")
    assert shown == "https://lps.example/hook"


# --- against endpoints ----------------------------------------------------------------------


async def test_reference_lps_passes_every_scenario_with_the_task_round_trip() -> None:
    secret = generate_secret()
    stand_in = TaskApiStandIn("127.0.0.1", 0, WebhookSecrets(secret))
    await stand_in.start()
    answerer = TaskAnswerer(f"http://127.0.0.1:{stand_in.port}", secret)
    await answerer.start()
    try:
        async with ReferenceLps(secret, on_receive=answerer.on_receive) as lps:
            report = await run(lps.url, secret, task_api=stand_in, timeout=5.0)
    finally:
        await answerer.close()
        await stand_in.stop()
    results = by_name(report)
    assert report.passed, report.to_json()
    assert {name for name, (result, _) in results.items() if result is not Result.PASS} == set()
    expected = {s.name for s in SCENARIOS} | {s.name for s in SUMMARIES} | {"task-round-trip"}
    assert set(results) == expected
    assert "received" in results["task-round-trip"][1]
    assert 202 in answerer.results
    # What the reference LPS accepted: each delivery once, the duplicate dropped.
    assert lps.duplicates == 1
    assert lps.bad_signatures == len(SIGNATURE_REFUSALS)


async def test_without_task_api_the_round_trip_is_skipped_and_the_run_still_passes() -> None:
    async with ReferenceLps() as lps:
        report = await run(lps.url, lps.secret)
    assert report.passed
    assert by_name(report)["task-round-trip"][0] is Result.SKIP
    assert report.to_json()["counts"] == {"pass": 21, "fail": 0, "skip": 1}


async def test_careless_endpoint_fails_exactly_the_signature_scenarios() -> None:
    async def accept_everything(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    async with endpoint(accept_everything) as url:
        report = await run(url, generate_secret())
    assert not report.passed
    assert set(report.failed()) == SIGNATURE_REFUSALS
    reason = by_name(report)["signature-tampered-body"][1]
    assert "accepted what must be refused" in reason


async def test_slow_endpoint_fails_on_the_timeout_and_the_run_stays_bounded() -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await request.read()
        await release.wait()  # longer than any --timeout: until the test ends
        return web.Response(text="late")

    async with endpoint(slow) as url:
        try:
            report = await asyncio.wait_for(run(url, generate_secret(), timeout=0.5), timeout=60)
        finally:
            release.set()
    results = by_name(report)
    assert results["answer-within-timeout"][0] is Result.FAIL
    assert "no answer within 0.5 s" in results["answer-within-timeout"][1]
    assert results["deliver-video-queue"] == (
        Result.FAIL,
        "a signed video-queue message: no answer within 0.5 s",
    )


async def test_the_whole_run_is_cut_at_max_time() -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await request.read()
        await release.wait()
        return web.Response(text="late")

    async with endpoint(slow) as url:
        try:
            report = await run(url, generate_secret(), timeout=30.0, max_time=1.0)
        finally:
            release.set()
    unfinished = [o for o in report.outcomes if "not finished within the run's limit of 1 s" in o.reason]
    assert unfinished
    assert all(o.result is Result.FAIL for o in unfinished)


async def test_429_with_retry_after_is_honoured_and_without_it_fails() -> None:
    secret = generate_secret()
    verifier = WebhookSecrets(secret)
    seen: set[str] = set()

    async def throttle_once(request: web.Request) -> web.Response:
        body = await request.read()
        if not verifier.verify(body, request.headers):
            return web.Response(status=401)
        webhook_id = request.headers["webhook-id"]
        if webhook_id not in seen:
            seen.add(webhook_id)
            return web.Response(status=429, headers={"retry-after": "0"})
        return web.Response(text="ok")

    async with endpoint(throttle_once) as url:
        report = await run(url, secret)
    results = by_name(report)
    assert report.passed, report.to_json()
    assert results["status-429-retry-after"][0] is Result.PASS
    assert "with a valid Retry-After" in results["status-429-retry-after"][1]

    async def throttle_bare(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=429)

    async with endpoint(throttle_bare) as url:
        report = await run(url, secret)
    results = by_name(report)
    assert results["status-429-retry-after"][0] is Result.FAIL
    assert "no valid Retry-After" in results["status-429-retry-after"][1]


async def test_410_is_reported_as_understood_information() -> None:
    async def gone(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=410)

    async with endpoint(gone) as url:
        report = await run(url, generate_secret())
    result, reason = by_name(report)["status-410-gone"]
    assert result is Result.PASS
    assert reason.startswith("info:")
    assert "stops delivering" in reason
    assert by_name(report)["deliver-video-queue"][0] is Result.FAIL


async def test_unreachable_endpoint_fails_every_delivery_with_a_reason() -> None:
    async def never(_request: web.Request) -> web.Response:
        raise AssertionError

    async with endpoint(never) as url:
        pass  # the server is gone again: its port refuses connections
    report = await run(url, generate_secret(), timeout=2.0)
    assert not report.passed
    assert by_name(report)["deliver-task-request"][1].endswith("no answer (could not connect)")


async def test_task_round_trip_names_why_an_answer_was_refused() -> None:
    secret = generate_secret()
    stand_in = TaskApiStandIn("127.0.0.1", 0, WebhookSecrets(secret))
    await stand_in.start()
    # The LPS signs its answers with a secret the consumer does not know.
    answerer = TaskAnswerer(f"http://127.0.0.1:{stand_in.port}", generate_secret())
    await answerer.start()
    try:
        async with ReferenceLps(secret, on_receive=answerer.on_receive) as lps:
            report = await run(lps.url, secret, task_api=stand_in, task_api_url="http://x:1", task_wait=1.0)
    finally:
        await answerer.close()
        await stand_in.stop()
    result, reason = by_name(report)["task-round-trip"]
    assert result is Result.FAIL
    assert "no valid answer at POST http://x:1/tasks/" in reason
    assert "HTTP 401" in reason
    assert answerer.results
    assert set(answerer.results) == {401}


async def test_task_round_trip_refuses_an_illegal_first_status() -> None:
    secret = generate_secret()
    stand_in = TaskApiStandIn("127.0.0.1", 0, WebhookSecrets(secret))
    await stand_in.start()
    answerer = TaskAnswerer(f"http://127.0.0.1:{stand_in.port}", secret, status=TaskStatus.COMPLETED)
    await answerer.start()
    try:
        async with ReferenceLps(secret, on_receive=answerer.on_receive) as lps:
            report = await run(lps.url, secret, task_api=stand_in, task_wait=1.0)
    finally:
        await answerer.close()
        await stand_in.stop()
    result, reason = by_name(report)["task-round-trip"]
    assert result is Result.FAIL
    assert "cannot move from requested to completed" in reason


async def test_an_injected_session_is_used_and_left_open() -> None:
    async with ReferenceLps() as lps, aiohttp.ClientSession() as session:
        report = await run(lps.url, lps.secret, session=session)
        assert not session.closed
    assert report.passed


async def test_json_and_junit_reports() -> None:
    async def accept_everything(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="ok")

    async with endpoint(accept_everything) as url:
        report = await run(url, generate_secret())
    shape = report.to_json()
    assert set(shape) == {"url", "timeout", "passed", "counts", "seconds", "scenarios"}
    assert shape["passed"] is False
    assert shape["counts"]["fail"] == len(SIGNATURE_REFUSALS)
    for scenario in shape["scenarios"]:
        assert set(scenario) == {"name", "rule", "result", "reason", "seconds"}
        assert scenario["result"] in {"pass", "fail", "skip"}
        assert "\n" not in scenario["reason"]
    suite = ET.fromstring(report.to_junit()).find("testsuite")  # noqa: S314  our own output
    assert suite is not None
    assert suite.get("failures") == str(len(SIGNATURE_REFUSALS))
    assert suite.get("skipped") == "1"
    failed = {case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None}
    assert failed == SIGNATURE_REFUSALS
