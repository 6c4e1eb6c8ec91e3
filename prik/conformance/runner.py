"""The HTTP runner: sends every scenario's probes to the endpoint and judges the answers.

Bounded in time: every request has `timeout` (and a hard `asyncio.timeout` over
it), a 429 is retried after its `Retry-After` only while that is short, and the
whole run stops at `max_time`, failing whatever had not finished. The aiohttp
session can be injected (a test's own connector, a proxy); otherwise one is made
and closed here.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import aiohttp
from yarl import URL

from consumers.backoff import parse_retry_after
from consumers.signing import WebhookSecrets
from contracts import MessageType
from contracts.examples import EXAMPLE_CLINIC_SOR

from .probes import Expect, Kit, Probe
from .report import Outcome, Report
from .scenarios import SCENARIOS, Scenario
from .summaries import SUMMARIES, Summary
from .taskapi import TaskApiStandIn
from .verdicts import Answer, Exchange, Result, Verdict, judge_exchanges

__all__ = ["ConformanceRunner", "shown_url"]

TASK_ROUND_TRIP = "task-round-trip"
_TASK_RULE = "a task request is answered through the consumer's task API: POST /tasks/{id}/status, signed"
# How much of an answer body is read (so the connection can be reused); the rest is ignored.
_DRAIN = 64 * 1024
_MAX_RETRIES = 3


def shown_url(url: str) -> str:
    """`url` without what may be a credential (user, password, query, fragment)."""
    try:
        return str(URL(url).with_user(None).with_query(None).with_fragment(None))
    except (TypeError, ValueError):
        return "(unreadable URL)"


class ConformanceRunner:
    """Certifies the webhook endpoint at `url`, signing with `secrets` as the consumer does.

    `task_api`: a started stand-in of the consumer's task API (the round trip is
    skipped without one). `max_retry_after`: a 429 whose Retry-After is longer is
    not waited for (the scenario then fails on the 429).
    """

    def __init__(
        self,
        url: str,
        secrets: WebhookSecrets,
        *,
        clinic: str = EXAMPLE_CLINIC_SOR,
        timeout: float = 15.0,
        max_time: float = 300.0,
        concurrency: int = 4,
        session: aiohttp.ClientSession | None = None,
        task_api: TaskApiStandIn | None = None,
        task_api_url: str | None = None,
        task_wait: float = 30.0,
        max_retry_after: float = 30.0,
        scenarios: Sequence[Scenario] = SCENARIOS,
        summaries: Sequence[Summary] = SUMMARIES,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        if timeout <= 0 or max_time <= 0 or task_wait <= 0 or concurrency < 1:
            msg = "timeouts must be positive and concurrency at least 1"
            raise ValueError(msg)
        self._url = url
        self._kit = Kit(secrets, clinic)
        self._timeout = timeout
        self._max_time = max_time
        self._slots = asyncio.Semaphore(concurrency)
        self._session = session
        self._task_api = task_api
        self._task_api_url = (task_api_url or "").rstrip("/")
        self._task_wait = task_wait
        self._max_retry_after = max_retry_after
        self._scenarios = tuple(scenarios)
        self._summaries = tuple(summaries)
        self._now = now or (lambda: datetime.now(UTC))
        self._exchanges: list[Exchange] = []

    async def run(self) -> Report:
        started = time.monotonic()
        own = self._session is None
        session = self._session or aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout, connect=min(5.0, self._timeout))
        )
        try:
            outcomes = await self._run_all(session)
        finally:
            if own:
                await session.close()
        summaries = [self._summary(summary) for summary in self._summaries]
        took = time.monotonic() - started
        return Report(shown_url(self._url), self._timeout, (*outcomes, *summaries), took)

    async def _run_all(self, session: aiohttp.ClientSession) -> list[Outcome]:
        names_rules = [(s.name, s.rule) for s in self._scenarios] + [(TASK_ROUND_TRIP, _TASK_RULE)]
        tasks: list[asyncio.Task[Outcome]] = [
            asyncio.create_task(self._scenario(session, scenario)) for scenario in self._scenarios
        ]
        tasks.append(
            asyncio.create_task(self._timed(TASK_ROUND_TRIP, _TASK_RULE, lambda: self._round_trip(session)))
        )
        _done, pending = await asyncio.wait(tasks, timeout=self._max_time)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        outcomes: list[Outcome] = []
        for (name, rule), task in zip(names_rules, tasks, strict=True):
            if task in pending:
                reason = f"not finished within the run's limit of {self._max_time:g} s"
                outcomes.append(Outcome(name, rule, Result.FAIL, reason, self._max_time))
            else:
                outcomes.append(task.result())
        return outcomes

    async def _scenario(self, session: aiohttp.ClientSession, scenario: Scenario) -> Outcome:
        async def check() -> Verdict:
            exchanges = [await self._exchange(session, probe) for probe in scenario.probes(self._kit)]
            return judge_exchanges(exchanges, self._timeout)

        return await self._timed(scenario.name, scenario.rule, check)

    async def _timed(self, name: str, rule: str, check: Callable[[], Awaitable[Verdict]]) -> Outcome:
        # The check is made only once a slot is free: a run stopped early leaves no coroutine unawaited.
        async with self._slots:
            started = time.monotonic()
            verdict = await check()
            return Outcome(name, rule, verdict.result, verdict.reason, time.monotonic() - started)

    def _summary(self, summary: Summary) -> Outcome:
        verdict = summary.judge(self._exchanges, self._timeout)
        return Outcome(summary.name, summary.rule, verdict.result, verdict.reason, 0.0)

    async def _exchange(self, session: aiohttp.ClientSession, probe: Probe) -> Exchange:
        """`probe` sent, and sent again after a 429's Retry-After (a short one, a few times), as prik does."""
        if probe.task_id is not None and probe.expect is Expect.ACCEPT and self._task_api is not None:
            self._task_api.expect(probe.task_id)  # the LPS may answer any task it was given
        attempts: list[Answer] = []
        for attempt in range(_MAX_RETRIES + 1):
            answer = await self._post(session, probe)
            attempts.append(answer)
            if answer.status != 429 or attempt == _MAX_RETRIES:
                break
            wait = parse_retry_after(answer.retry_after)
            if wait is None or wait > self._max_retry_after:
                break
            await asyncio.sleep(wait)
        exchange = Exchange(probe, tuple(attempts))
        self._exchanges.append(exchange)
        return exchange

    async def _post(self, session: aiohttp.ClientSession, probe: Probe) -> Answer:
        headers = {**probe.sign(self._now()), "user-agent": "prik-conformance"}
        started = time.monotonic()
        try:
            # The session's timeout may be anything (it can be injected): this one bounds each request.
            async with (
                asyncio.timeout(self._timeout),
                session.post(self._url, data=probe.body, headers=headers, allow_redirects=False) as response,
            ):
                await response.content.read(_DRAIN)
                retry_after = response.headers.get("retry-after")
                return Answer(response.status, time.monotonic() - started, retry_after)
        except TimeoutError:  # aiohttp's own timeouts are TimeoutErrors too
            return Answer(None, time.monotonic() - started, error="timeout")
        except aiohttp.ClientConnectorError:
            return Answer(None, time.monotonic() - started, error="could not connect")
        except aiohttp.ClientError as exc:
            return Answer(None, time.monotonic() - started, error=f"HTTP failed: {type(exc).__name__}")

    async def _round_trip(self, session: aiohttp.ClientSession) -> Verdict:
        stand_in = self._task_api
        if stand_in is None:
            return Verdict(
                Result.SKIP,
                "not checked: give --task-api http://HOST:PORT and have the LPS answer tasks there",
            )
        task_id = uuid.uuid4()
        probe = self._kit.signed("a task request", self._kit.message(MessageType.TASK_REQUEST, task_id))
        started = time.monotonic()
        delivered = judge_exchanges([await self._exchange(session, probe)], self._timeout)
        if delivered.result is not Result.PASS:
            return Verdict.failed(f"the task request was not delivered: {delivered.reason}")
        seen = await stand_in.wait_for(task_id, self._task_wait)
        if seen is None:
            where = f"POST {self._task_api_url}/tasks/{task_id}/status"
            refused = stand_in.refusals
            also = f"; {len(refused)} answer(s) refused, last: {refused[-1]}" if refused else ""
            return Verdict.failed(f"no valid answer at {where} within {self._task_wait:g} s{also}")
        took = time.monotonic() - started
        return Verdict.passed(f"task answered '{seen.status.value}' after {took:.2f} s, signed and valid")
