"""The router service: state tables loaded, then the transactional engine, until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from contracts import Tenants
from prik.logs import get_logger
from prik.metrics import MetricsServer, set_lags
from prik.settings import Settings

from .dedup import DedupWindow
from .engine import EngineStats, TransactionalEngine
from .metrics import RouterMetrics
from .reader import CompactedReader
from .router import Router
from .tables import DirectoryTable, TaskTable
from .tokens import DEVELOPMENT_TOKENS, tokens_from_settings

__all__ = ["RouterService", "unique_instance_id"]

_log = get_logger(__name__)


def unique_instance_id() -> str:
    """Host name, process id and a random part: two instances never share one.

    The id names the instance to Kafka (client id) and in logs; fencing does not
    depend on it (transactional ids follow partition numbers, broker/assignor.py).
    """
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class RouterService:
    """`async with RouterService(...) as service: await service.run()`."""

    def __init__(
        self,
        settings: Settings,
        tenants: Callable[[], Tenants],
        *,
        instance_id: str | None = None,
        progress_every: float = 10.0,
        shutdown_grace: float = 30.0,
    ) -> None:
        topics = settings.topics
        # First: a configuration error must not leave half-made Kafka clients behind.
        tokens = tokens_from_settings(settings)
        self.directory = DirectoryTable()
        self.tasks = TaskTable()
        directory_reader = CompactedReader(settings.kafka, topics.directory, self.directory)
        tasks_reader = CompactedReader(settings.kafka, topics.tasks, self.tasks)
        self._readers = [directory_reader, tasks_reader]
        self.router = Router(
            topics,
            tenants,
            self.directory,
            self.tasks,
            DedupWindow(),
            catch_up_directory=directory_reader.catch_up,
            catch_up_tasks=tasks_reader.catch_up,
            max_message_bytes=settings.max_message_bytes,
            tokens=tokens,
        )
        self._progress_every = progress_every
        self.metrics = RouterMetrics(topics, tenants)
        self._group_id = f"{topics.prefix}-router"
        # Prometheus text and health on PRIK_METRICS_HOST:PRIK_METRICS_PORT (loopback by default).
        self.metrics_server: MetricsServer | None = None
        if settings.metrics_port is not None:
            self.metrics_server = MetricsServer(
                host=settings.metrics_host,
                port=settings.metrics_port,
                registry=self.metrics.registry,
                health=self.health,
                refresh=self._refresh_metrics,
            )
        self._last_progress = time.monotonic()
        self.engine = TransactionalEngine(
            settings.kafka,
            self.router,
            group_id=self._group_id,
            transactional_prefix=topics.prefix,
            instance_id=f"{topics.prefix}-router-{instance_id or unique_instance_id()}",
            on_batch=self._progress,
            metrics=self.metrics,
        )
        self._started = False
        self._shutdown_grace = shutdown_grace
        self._stop_requested = asyncio.Event()
        self._run_task: asyncio.Task[None] | None = None

    def _progress(self, stats: EngineStats) -> None:
        now = time.monotonic()
        if now - self._last_progress >= self._progress_every:
            self._last_progress = now
            _log.info("router.progress", records=stats.records, batches=stats.batches, **stats.verdicts)

    async def _refresh_metrics(self) -> None:
        set_lags(self.metrics.lag, self._group_id, await self.engine.lags())

    async def health(self) -> tuple[bool, dict[str, object]]:
        """Progress, as the consumer's: the fetch loop turns and what waits gets committed."""
        lag = sum(behind for _, _, behind in await self.engine.lags())
        engine_alive = self._run_task is None or not self._run_task.done()
        running = self._started and engine_alive and not self._stop_requested.is_set()
        healthy, reason = self.metrics.assess(running=running, lag=lag)
        stats = self.engine.stats
        age = self.metrics.last_commit_age()
        return healthy, {
            "healthy": healthy,
            "reason": reason,
            "records": stats.records,
            "batches": stats.batches,
            "aborted": stats.aborted,
            "verdicts": dict(stats.verdicts),
            "lag": lag,
            "last_commit_age_seconds": None if age is None else round(age, 3),
        }

    async def load_state(self) -> None:
        """Read the directory and the task states to their ends, then keep following them."""
        for reader in self._readers:
            await reader.start()

    async def close_state(self) -> None:
        for reader in self._readers:
            with contextlib.suppress(Exception):
                await reader.stop()

    async def start(self) -> None:
        if self._started:
            return
        await self.load_state()
        await self.engine.start()
        self.metrics.started()
        if self.metrics_server is not None:
            await self.metrics_server.start()
        self._started = True
        if self.router.tokens is DEVELOPMENT_TOKENS:
            _log.warning("router.development_route_key", hint="set PRIK_ROUTE_KEY_FILE before production")
        _log.info("router.started", clinics=len(self.directory), tasks=len(self.tasks))

    def request_stop(self) -> None:
        """First call: finish the batch in flight, then stop. Second call: stop now."""
        if self._stop_requested.is_set() and self._run_task is not None:
            self._run_task.cancel()
        self._stop_requested.set()
        self.engine.request_stop()

    async def run(self, *, handle_signals: bool = True) -> None:
        """Route until SIGINT/SIGTERM (or `request_stop`), then stop gracefully.

        The batch in flight gets `shutdown_grace` seconds to commit; a broker that
        stopped answering must not keep the process alive past that, and an
        uncommitted transaction is aborted by Kafka (or fenced by the next start).
        """
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM) if handle_signals else ()
        for sig in signals:
            loop.add_signal_handler(sig, self.request_stop)
        self._run_task = asyncio.create_task(self.engine.run(), name="router-engine")
        try:
            done, _ = await asyncio.wait(
                {self._run_task, asyncio.create_task(self._stop_requested.wait())},
                return_when=asyncio.FIRST_COMPLETED,
            )
            if self._run_task not in done:
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(self._run_task), self._shutdown_grace)
            if not self._run_task.done():
                _log.warning("router.shutdown_forced", grace_seconds=self._shutdown_grace)
                self._run_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._run_task
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            await self.stop()

    async def stop(self) -> None:
        """Finish the batch in flight, commit it, leave the group, close. Safe twice."""
        if not self._started:
            return
        self._started = False
        await self.engine.stop()
        await self.close_state()
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        stats = self.engine.stats
        _log.info("router.stopped", records=stats.records, batches=stats.batches, **stats.verdicts)

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            # A half-started service must not leave its readers' connections open.
            await self.engine.stop()
            await self.close_state()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
