"""The demo, end to end in one process: Kafka, topics, directory, router, consumers, senders.

Every part is the production code, run in-process: `RouterService`, one
`ClinicConsumer` per LPS vendor delivering by signed webhook to a reference LPS,
the sender SDK. Each run has its own topic prefix, so a rerun on the same
broker never sees an earlier run's data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from pydantic import SecretStr
from rich.console import Console

from broker import RouterService
from contracts import Outcome, PrikError, Tenants, rfc3339
from deploy import acquire_kafka
from deploy.acls import ROUTER_USER, apply_access
from deploy.directory import load_directory
from deploy.topics import apply_topics
from prik.accounting import OUTCOME_FIELDS, usage
from prik.accounting.view import usage_table
from prik.dashboard import Dashboard
from prik.dashboard.peak import accounting_peak
from prik.logs import configure_logging, get_logger
from prik.settings import KafkaSettings, Settings

from .cast import LPS_VENDORS, MUNICIPALITIES, VIDEO_PLATFORM, demo_cast
from .clinics import ClinicSide
from .replies import watch_replies
from .tally import Tally
from .traffic import Traffic
from .view import Status, final_report, live_view

__all__ = ["DemoOptions", "DemoResult", "logs_to", "new_run_dir", "run_demo"]

_log = get_logger("prik.demo")
_POLL = 0.1


@dataclass(frozen=True, slots=True)
class DemoOptions:
    seconds: float = 30.0
    rate: float = 60.0
    clinics: int = 200
    # Bounded: a message that never gets its receipt must fail the run, not hang it.
    drain_timeout: float = 60.0
    # Short enough that the outage dead-letters a few messages during the run.
    max_retry_time: float = 4.0
    run_root: Path = Path(".prik/demo")
    seed: int | None = None
    # A SASL_SSL broker of the run's own; every party connects as its own Kafka user.
    secure: bool = False
    # Where the run's dashboard listens (0: any free port; the URL is printed).
    dashboard_port: int = 0


@dataclass(slots=True)
class DemoResult:
    run_dir: Path
    sent: int = 0
    problems: list[str] = field(default_factory=list)
    interrupted: bool = False


class _Interrupted(Exception):  # noqa: N818  control flow: SIGINT/SIGTERM during set-up
    pass


def new_run_dir(root: Path) -> Path:
    """A fresh folder for one run, named like its topic prefix (`demo-<unix time>-<random>`)."""
    run_dir = root / f"demo-{int(time.time())}-{secrets.token_hex(2)}"
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


@contextlib.contextmanager
def logs_to(path: Path) -> Iterator[None]:
    """Route structlog and the stdlib (aiokafka, asyncio) to a file, so the live view stays readable.

    Wrap the whole `run_to_end`: clients' leftover futures report their errors
    when the loop closes, and those reports belong in the file too.
    """
    previous = structlog.get_config()
    handle = path.open("a", encoding="utf-8")
    configure_logging("info", json=True)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=handle))
    handler = logging.StreamHandler(handle)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.setLevel(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        structlog.configure(**previous)
        handle.close()


@contextlib.contextmanager
def _signals(stop: asyncio.Event) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _until(condition: Callable[[], bool], stop: asyncio.Event, timeout: float) -> bool:  # noqa: ASYNC109  a deadline for polling
    """Poll `condition` until true (True), or until `stop` or `timeout` (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if stop.is_set() or time.monotonic() >= deadline:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), _POLL)
    return True


async def _step(stop: asyncio.Event, work: Awaitable[object]) -> None:
    await work
    if stop.is_set():
        raise _Interrupted


async def _outage(clinics: ClinicSide, status: Status, stop: asyncio.Event) -> None:
    start, end = status.outage
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), start)
        return
    clinics.fail(status.failing_lps, status.failing_clinic, end - start)


class _Demo:
    def __init__(
        self, settings: Settings, options: DemoOptions, console: Console, result: DemoResult
    ) -> None:
        self.options = options
        self.console = console
        self.result = result
        self.stop = asyncio.Event()
        self.prefix = result.run_dir.name
        self.settings = settings
        self.cast = demo_cast(options.clinics)
        failing = self.cast.clinics_of(LPS_VENDORS[0])[0]
        self.tally = Tally(failing.sor)
        self.status = Status(self.prefix, options.seconds, options.rate)
        self.status.failing_clinic, self.status.failing_lps = failing.sor, failing.lps
        # The outage covers the middle third of the sending time.
        self.status.outage = (options.seconds / 3, 2 * options.seconds / 3)
        self.tenants: Tenants = self.cast.tenants
        # The window of the run's `prik usage` table: everything it sends comes later.
        self.started = datetime.now(UTC) - timedelta(seconds=1)

    async def run(self, stack: contextlib.AsyncExitStack) -> None:
        kafka = await acquire_kafka(
            self.settings.kafka, self.result.run_dir / "kafka", secure=self.options.secure
        )
        stack.push_async_callback(kafka.release)
        self.status.kafka = kafka.description
        if self.stop.is_set():
            raise _Interrupted
        # The operators' part (topics, users and ACLs, directory, the usage report) runs as admin;
        # every other party connects as its own Kafka user, so the ACLs are what the demo runs under.
        settings = self.settings.model_copy(
            update={
                "kafka": kafka.admin,
                "topic_prefix": self.prefix,
                "route_key": SecretStr(secrets.token_urlsafe(32)),
            }
        )
        kafka_settings, topics = settings.kafka, settings.topics
        credentials = self.result.run_dir / "credentials"

        def as_party(user: str) -> KafkaSettings:
            return kafka.as_user(user, credentials / f"{user}.password")

        _log.info("demo starting", prefix=self.prefix, kafka=kafka.description)
        await _step(self.stop, apply_topics(kafka_settings, topics, self.tenants))
        if kafka.secure:
            await _step(self.stop, apply_access(kafka_settings, topics, self.tenants, credentials))
        await _step(self.stop, load_directory(kafka_settings, topics, self.cast.clinics))

        clinics = ClinicSide(
            as_party,
            topics,
            LPS_VENDORS,
            self.tally,
            max_retry_time=self.options.max_retry_time,
            seed=self.options.seed,
        )
        stack.push_async_callback(clinics.stop)
        await _step(self.stop, clinics.start())

        router_settings = settings.model_copy(update={"kafka": as_party(ROUTER_USER)})
        router = RouterService(router_settings, lambda: self.tenants, instance_id="demo")
        stack.push_async_callback(router.stop)
        await _step(self.stop, router.start())
        router_task = asyncio.create_task(router.run(handle_signals=False), name="prik-demo-router")
        stack.push_async_callback(self._stop_router, router, router_task)

        watchers = [
            asyncio.create_task(watch_replies(as_party(tenant), topics, tenant, self.tally))
            for tenant in (VIDEO_PLATFORM, *(m.tenant for m in MUNICIPALITIES), *LPS_VENDORS)
        ]
        stack.push_async_callback(_cancel, watchers)

        traffic = Traffic(
            as_party,
            topics,
            self.cast,
            self.tally,
            rate=self.options.rate,
            failing_clinic=self.status.failing_clinic,
            seed=self.options.seed,
        )
        stack.push_async_callback(traffic.stop)
        await _step(self.stop, traffic.start())

        # The operators' page, live for the run: the same one `prik dashboard` serves.
        dashboard = Dashboard(
            kafka_settings,
            topics,
            self.tenants,
            port=self.options.dashboard_port,
            peak=accounting_peak(kafka_settings, topics, self.tenants),
        )
        await _step(self.stop, stack.enter_async_context(dashboard))
        self.status.dashboard = dashboard.url

        async with live_view(self.console, self.status, self.tally, clinics):
            await self._send_and_drain(traffic, clinics, [router_task, *watchers])
        if traffic.errors:
            self.status.notes.append(f"{traffic.errors} publish(es) failed and were not counted as sent")
        if clinics.answer_errors:
            self.status.notes.append(f"{clinics.answer_errors} task answer(s) could not be published")
        final_report(self.console, self.status, self.tally, clinics)
        if not self.stop.is_set():
            await self._usage(settings)
        self.console.print(f"dashboard served during the run: {dashboard.url} (stops with the demo)")

    async def _usage(self, settings: Settings) -> None:
        """The run's `prik usage` table: the same accounting, read back from Kafka itself.

        Every message of the run has exactly one final receipt by now (else the run
        has failed already), so its outcomes must agree with the demo's own count;
        a publish that failed (a note) may still have landed, so then it is not compared.
        """
        try:
            account = await usage(
                settings.kafka,
                settings.topics,
                self.tenants,
                self.started,
                max_message_bytes=settings.max_message_bytes,
            )
        except PrikError as exc:
            self.result.problems.append(f"prik usage failed: {exc}")
            return
        self.console.print(usage_table(account, heading=f"prik usage --since {rfc3339(self.started)}"))
        total = account.total
        counted = {o: getattr(total, OUTCOME_FIELDS[o]) for o in Outcome}
        tallied = {o: self.tally.outcome_total(o) for o in Outcome}
        if counted != tallied and not self.result.problems and not self.status.notes:
            differ = ", ".join(
                f"{o.value} {counted[o]} vs {tallied[o]}" for o in Outcome if counted[o] != tallied[o]
            )
            self.result.problems.append(f"prik usage disagrees with the demo's own count: {differ}")

    async def _send_and_drain(
        self, traffic: Traffic, clinics: ClinicSide, essential: list[asyncio.Task[None]]
    ) -> None:
        def broken() -> str | None:
            for task in essential:
                if task.done():
                    error = None if task.cancelled() else task.exception()
                    return f"{task.get_name()} stopped early: {error or 'cancelled'}"
            return None

        status = self.status
        status.phase, status.sending_since = "sending", time.monotonic()
        outage = asyncio.create_task(_outage(clinics, status, self.stop))
        # Senders stop early if the router or a reader dies: nothing they sent could be accounted.
        watchdog = asyncio.create_task(_until(lambda: broken() is not None, self.stop, float("inf")))
        watchdog.add_done_callback(lambda _t: self.stop.set() if broken() else None)
        try:
            await traffic.run(self.options.seconds, self.stop)
            status.phase, status.drain_since = "draining: waiting for every receipt", time.monotonic()
            await traffic.stop()
            settled = await _until(
                lambda: self.tally.settled() and not clinics.busy, self.stop, self.options.drain_timeout
            )
        finally:
            await _cancel([outage, watchdog])
        self.result.sent = self.tally.sent_total
        failure = broken()
        if failure is not None:
            self.result.problems.append(failure)
        elif self.stop.is_set():
            self.result.interrupted = True
            status.phase = "interrupted"
            return
        status.phase = "done" if settled else f"drain timed out after {self.options.drain_timeout:g} s"
        self.result.problems += self.tally.problems()
        for message in self.tally.unreceipted():
            _log.warning("demo message without a receipt", **message)

    async def _stop_router(self, router: RouterService, task: asyncio.Task[None]) -> None:
        router.request_stop()
        try:
            await asyncio.wait_for(task, 30.0)
        except Exception:  # noqa: BLE001  a failed router was reported already; shutdown goes on
            _log.exception("router stopped with an error")


async def _cancel(tasks: Sequence[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def run_demo(
    settings: Settings, options: DemoOptions, console: Console, run_dir: Path | None = None
) -> DemoResult:
    """Run the whole demo; SIGINT/SIGTERM stop it cleanly, stopping everything it started.

    The run's topic prefix is the name of `run_dir` (a fresh one under
    `options.run_root` when not given); route the logs with `logs_to` first.
    """
    result = DemoResult(run_dir=run_dir or new_run_dir(options.run_root))
    demo = _Demo(settings, options, console, result)
    with _signals(demo.stop):
        try:
            async with contextlib.AsyncExitStack() as stack:
                await demo.run(stack)
                if not result.interrupted:
                    console.print("stopping: senders, consumers, router, reference LPS servers ...")
        except _Interrupted:
            result.interrupted = True
    return result
