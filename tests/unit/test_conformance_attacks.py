"""A hostile reviewer's checks of `prik conformance`: does each scenario catch the endpoint it is for?

A zoo of endpoints, each wrong in a known way (generated: every combination of
how it verifies signatures, how it checks the timestamp, duplicates, strictness,
and a blanket answer), must fail exactly the scenarios a model of DESIGN.md
"Webhook delivery" says it breaks. Then the run's bounds against endpoints that
never answer, and the reports: JSON shape, JUnit that parses, a table that shows
text as written, exit codes, and no secret in any output.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import socket
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from consumers import WebhookSecrets, generate_secret
from consumers.serving import serve
from contracts import codec
from prik.cli.conformance import report_table
from prik.conformance import SCENARIOS, ConformanceRunner, Outcome, Report, Result, sample_message
from prik.conformance.probes import DELIVERED_TYPES
from tests.unit.test_conformance import SIGNATURE_REFUSALS, by_name, run

CLINIC = "123456789012"
ACCEPT_SCENARIOS = {s.name for s in SCENARIOS} - SIGNATURE_REFUSALS
DELIVER = {f"deliver-{t}" for t in ("video-queue", "referral-status", "task-request", "task-status")}
Verify = Literal["none", "first-only", "last-only", "any"]
Clock = Literal["none", "past-only", "both"]


@dataclass(frozen=True)
class Behaviour:
    """How one endpoint is wrong (or right)."""

    verify: Verify = "any"
    clock: Clock = "both"
    duplicate_conflict: bool = False
    strict: bool = False
    blanket: int | None = None  # answer this to everything, after reading the body

    def expected_failures(self) -> set[str]:
        """The scenarios DESIGN.md's rules say this endpoint breaks."""
        everything = {s.name for s in SCENARIOS}
        if self.blanket is not None:
            if 200 <= self.blanket < 300:
                return set(SIGNATURE_REFUSALS)
            if 400 <= self.blanket < 500 and self.blanket not in {408, 429}:  # "later", not "no"
                return ACCEPT_SCENARIOS
            return everything
        failed: set[str] = set()
        if self.verify == "none":
            failed |= SIGNATURE_REFUSALS
        if self.verify in {"first-only", "last-only"}:
            failed.add("signature-rotation")
        if self.clock == "none":
            failed |= {"signature-stale-timestamp", "signature-future-timestamp"}
        if self.clock == "past-only":
            failed.add("signature-future-timestamp")
        if self.duplicate_conflict:
            failed.add("duplicate-webhook-id")
        if self.strict:
            failed |= {"extension-unknown", "field-unknown"}
        return failed


def _known_keys() -> tuple[set[str], set[str]]:
    """Every envelope attribute and data field this version's delivered messages use."""
    envelope: set[str] = {"traceparent", "tracestate", "partitionkey"}
    data: set[str] = set()
    for kind in DELIVERED_TYPES:
        obj = codec.loads(
            codec.dumps(sample_message(kind, CLINIC).model_dump(mode="json", exclude_none=True))
        )
        envelope |= set(obj)
        data |= set(obj["data"])
    return envelope, data


KNOWN_ENVELOPE, KNOWN_DATA = _known_keys()


class ZooLps:
    """An endpoint whose behaviour the test swaps; verifies Standard Webhooks by hand (so it can be wrong).

    `keys`: the secrets it verifies with (during a rotation, two).
    """

    def __init__(self, secret: str) -> None:
        self.keys = [base64.b64decode(secret.removeprefix("whsec_"))]
        self.behaviour = Behaviour()
        self.seen: set[str] = set()

    def _signature_ok(self, request: web.Request, body: bytes) -> bool:
        try:
            msg_id = request.headers["webhook-id"]
            stamp = request.headers["webhook-timestamp"]
            given = request.headers["webhook-signature"].split()
            sent_at = int(stamp)
        except (KeyError, ValueError):
            return False
        skew = time.time() - sent_at
        clock = self.behaviour.clock
        if (clock in {"past-only", "both"} and skew > 300) or (clock == "both" and skew < -300):
            return False
        looked_at = {"first-only": given[:1], "last-only": given[-1:]}.get(self.behaviour.verify, given)
        for key in self.keys:
            mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
            expected = "v1," + base64.b64encode(mac).decode()
            if any(hmac.compare_digest(expected, signature) for signature in looked_at):
                return True
        return False

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        behaviour = self.behaviour
        if behaviour.blanket is not None:
            return web.Response(
                status=behaviour.blanket, headers={"retry-after": "0", "location": "/elsewhere"}
            )
        if behaviour.verify != "none" and not self._signature_ok(request, body):
            return web.Response(status=401)
        envelope = codec.loads(body)
        if behaviour.strict and (set(envelope) - KNOWN_ENVELOPE or set(envelope["data"]) - KNOWN_DATA):
            return web.Response(status=422)
        msg_id = request.headers.get("webhook-id", "")
        if msg_id in self.seen and behaviour.duplicate_conflict:
            return web.Response(status=409)
        self.seen.add(msg_id)
        return web.Response(status=204)


@asynccontextmanager
async def zoo(secret: str) -> AsyncIterator[tuple[ZooLps, str]]:
    lps = ZooLps(secret)
    app = web.Application()
    app.router.add_post("/webhook", lps.handle)
    runner, port = await serve(app, "127.0.0.1", 0)
    try:
        yield lps, f"http://127.0.0.1:{port}/webhook"
    finally:
        await runner.cleanup()


BEHAVIOURS = st.builds(
    Behaviour,
    verify=st.sampled_from(["none", "first-only", "last-only", "any"]),
    clock=st.sampled_from(["none", "past-only", "both"]),
    duplicate_conflict=st.booleans(),
    strict=st.booleans(),
    blanket=st.none() | st.sampled_from([200, 204, 301, 307, 400, 401, 404, 408, 429, 500, 503]),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(behaviour=BEHAVIOURS)
async def test_each_endpoint_fails_exactly_the_scenarios_for_the_rules_it_breaks(
    behaviour: Behaviour,
) -> None:
    secret = generate_secret()
    async with zoo(secret) as (lps, url):
        lps.behaviour = behaviour
        report = await run(url, secret, timeout=5.0, max_retry_after=0.0)
    scenarios = {s.name for s in SCENARIOS}
    failed = set(report.failed()) & scenarios
    assert failed == behaviour.expected_failures(), report.to_json()
    summaries = by_name(report)
    # Every answer came in time and every 429 had a Retry-After: only the scenarios can fail.
    assert report.passed is (not failed)
    assert summaries["answer-within-timeout"][0] is Result.PASS
    assert summaries["status-429-retry-after"][0] is Result.PASS


async def test_the_reference_behaviour_passes_and_the_careless_one_fails_the_signatures() -> None:
    secret = generate_secret()
    async with zoo(secret) as (lps, url):
        report = await run(url, secret)
        assert report.passed, report.to_json()
        lps.behaviour = Behaviour(verify="none", clock="none")
        report = await run(url, secret)
    assert set(report.failed()) == SIGNATURE_REFUSALS


async def test_rotation_catches_an_endpoint_that_reads_only_one_end_of_the_signature_list() -> None:
    secret = generate_secret()
    async with zoo(secret) as (lps, url):
        for verify in ("first-only", "last-only"):
            lps.behaviour = Behaviour(verify=verify)
            report = await run(url, secret)
            result, reason = by_name(report)["signature-rotation"]
            assert result is Result.FAIL
            assert "HTTP 401" in reason


async def test_each_secret_catches_an_endpoint_that_verifies_with_only_one_of_its_secrets() -> None:
    old, new = generate_secret(), generate_secret()
    both = WebhookSecrets([old, new])
    async with zoo(old) as (lps, url):
        # Knows only the old secret: every delivery carries both signatures and passes, but
        # prik signing with the new secret alone would be refused.
        report = await ConformanceRunner(url, both, clinic=CLINIC).run()
        assert report.failed() == ["signature-each-secret"]
        assert (
            by_name(report)["signature-each-secret"][1]
            == "signed with secret 2 of 2 alone: answered HTTP 401, not 2xx"
        )
        lps.keys.append(base64.b64decode(new.removeprefix("whsec_")))
        report = await ConformanceRunner(url, both, clinic=CLINIC).run()
    assert report.passed, report.to_json()


async def test_a_429_to_a_forged_request_is_not_counted_as_refusing_it() -> None:
    secret = generate_secret()
    async with zoo(secret) as (lps, url):
        lps.behaviour = Behaviour(blanket=429)
        report = await run(url, secret, max_retry_after=0.0)
    reasons = by_name(report)
    for name in SIGNATURE_REFUSALS:
        assert reasons[name][0] is Result.FAIL
        assert "not a refusal" in reasons[name][1]


# --- bounded against endpoints that never answer ---------------------------------------------------


@asynccontextmanager
async def black_hole(accept: bool) -> AsyncIterator[str]:
    """A TCP port that accepts (or leaves in the backlog) every connection and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    if accept:
        server = await asyncio.start_server(swallow, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}/webhook"
        finally:
            for writer in held:
                writer.close()
            server.close()
            await server.wait_closed()
    else:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        try:
            yield f"http://127.0.0.1:{listener.getsockname()[1]}/webhook"
        finally:
            listener.close()


@pytest.mark.parametrize("accept", [True, False], ids=["accepts-never-answers", "never-accepts"])
async def test_a_black_hole_fails_every_delivery_and_the_run_ends(accept: bool) -> None:
    async with black_hole(accept) as url:
        # A hang guard only (the run's own bound is what is tested): 0.3 s a request, 20 s a run.
        report = await asyncio.wait_for(run(url, generate_secret(), timeout=0.3, max_time=20.0), 120)
    results = by_name(report)
    for name in DELIVER:
        assert results[name][0] is Result.FAIL
        assert "no answer within 0.3 s" in results[name][1]
    assert results["answer-within-timeout"][0] is Result.FAIL
    assert not report.passed


_REPLIES = st.one_of(
    st.binary(max_size=200),
    st.builds(
        lambda status, head, body: b"HTTP/1.1 " + status + b"\r\n" + head + b"\r\n\r\n" + body,
        st.sampled_from(
            [b"200 OK", b"204 No Content", b"429 Too Many", b"999 What", b"20", b"401 No", b"-1 x"]
        ),
        st.binary(max_size=120),
        st.binary(max_size=120),
    ),
    st.sampled_from(
        [
            b"HTTP/1.1 429 Too Many\r\nRetry-After: \xff\xfe\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nX: " + b"a" * 20000 + b"\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope",
        ]
    ),
)


@settings(max_examples=100, deadline=None)
@given(reply=_REPLIES)
async def test_whatever_bytes_an_endpoint_answers_the_run_ends_with_a_verdict_each(reply: bytes) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(reply)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/webhook"
        report = await asyncio.wait_for(run(url, generate_secret(), timeout=2.0, max_time=30.0), 120)
    finally:
        server.close()
        await server.wait_closed()
    assert {o.name for o in report.outcomes} >= {s.name for s in SCENARIOS}
    assert all(o.reason for o in report.outcomes)
    ET.fromstring(report.to_junit())  # noqa: S314  our own output, parsed to prove it is XML


async def test_an_answer_whose_body_trickles_forever_still_lets_the_run_end() -> None:
    # Like prik's deliverer, the run reads the status and the first of the body, not all of it.
    stop = asyncio.Event()

    async def trickle(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        while not stop.is_set():
            try:
                await response.write(b" ")
            except ConnectionError:
                break
            await asyncio.sleep(0.05)
        return response

    app = web.Application()
    app.router.add_post("/webhook", trickle)
    runner, port = await serve(app, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{port}/webhook"
        report = await asyncio.wait_for(run(url, generate_secret(), timeout=0.3, max_time=20.0), 120)
    finally:
        stop.set()
        await runner.cleanup()
    results = by_name(report)
    assert results["answer-within-timeout"][0] is Result.PASS
    assert set(report.failed()) == SIGNATURE_REFUSALS


# --- reports ------------------------------------------------------------------------------------------

_ANY_TEXT = st.text(max_size=200)


@settings(max_examples=200, deadline=None)
@given(
    url=_ANY_TEXT,
    outcomes=st.lists(
        st.builds(
            Outcome,
            name=_ANY_TEXT,
            rule=_ANY_TEXT,
            result=st.sampled_from(list(Result)),
            reason=_ANY_TEXT,
            seconds=st.floats(min_value=0, max_value=1e6),
        ),
        max_size=6,
    ),
)
def test_junit_is_always_xml_a_ci_reads_and_counts_right(url: str, outcomes: list[Outcome]) -> None:
    report = Report(url, 15.0, tuple(outcomes), 1.0)
    root = ET.fromstring(report.to_junit())  # noqa: S314  our own output, parsed to prove it is XML
    suite = root.find("testsuite")
    assert suite is not None
    assert suite.get("tests") == str(len(outcomes))
    assert suite.get("failures") == str(report.count(Result.FAIL))
    assert suite.get("skipped") == str(report.count(Result.SKIP))
    assert len(suite.findall("testcase")) == len(outcomes)
    assert len(suite.findall("testcase/failure")) == report.count(Result.FAIL)


_PRINTABLE = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60)


@settings(max_examples=150, deadline=None)
@given(url=_PRINTABLE, reason=st.text(alphabet="[]/ab:#@=", max_size=40) | _PRINTABLE)
def test_the_table_shows_reasons_and_the_url_as_written(url: str, reason: str) -> None:
    report = Report(url, 15.0, (Outcome("x", "rule", Result.FAIL, reason, 0.0),), 1.0)
    console = Console(width=1000, record=True, color_system=None)
    console.print(report_table(report))
    shown = "".join(console.export_text().split())
    assert reason in shown
    assert url in shown


# --- the command ------------------------------------------------------------------------------------


async def test_the_command_exits_1_with_json_junit_and_never_shows_the_secret(tmp_path: Path) -> None:
    secret = generate_secret()
    junit = tmp_path / "conformance.xml"
    async with zoo(secret) as (lps, url):
        lps.behaviour = Behaviour(verify="none")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "prik",
            "conformance",
            "--url",
            url,
            "--json",
            "--junit",
            str(junit),
            "--timeout",
            "5",
            env={**os.environ, "PRIK_WEBHOOK_SECRETS": secret, "NO_COLOR": "1"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 1
    shape = codec.loads(out)
    assert set(shape) == {"url", "timeout", "passed", "counts", "seconds", "scenarios"}
    assert shape["passed"] is False
    assert {s["name"] for s in shape["scenarios"] if s["result"] == "fail"} == SIGNATURE_REFUSALS
    for scenario in shape["scenarios"]:
        assert set(scenario) == {"name", "rule", "result", "reason", "seconds"}
        assert scenario["result"] in {"pass", "fail", "skip"}
    assert err.decode().startswith("prik: error: 8 of ")
    assert err.decode().count("\n") == 1
    written = junit.read_bytes()
    ET.fromstring(written)  # noqa: S314  our own output, parsed to prove it is XML
    key = secret.removeprefix("whsec_")
    for text in (out, err, written):
        assert key.encode() not in text
        assert key[:16].encode() not in text
