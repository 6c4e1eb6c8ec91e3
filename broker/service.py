"""The router service: state tables loaded, then the transactional engine, until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from contracts import Tenants
from prik.logs import get_logger
from prik.settings import Settings

from .dedup import DedupWindow
from .engine import EngineStats, TransactionalEngine
from .reader import CompactedReader
from .router import Router
from .tables import DirectoryTable, TaskTable

__all__ = ["RouterService"]

_log = get_logger(__name__)


class RouterService:
    """`async with RouterService(...) as service: await service.run()`."""

    def __init__(
        self,
        settings: Settings,
        tenants: Callable[[], Tenants],
        *,
        instance_id: str = "0",
        progress_every: float = 10.0,
    ) -> None:
        topics = settings.topics
        self.directory = DirectoryTable()
        self.tasks = TaskTable()
        self.router = Router(topics, tenants, self.directory, self.tasks, DedupWindow())
        self._readers = [
            CompactedReader(settings.kafka, topics.directory, self.directory),
            CompactedReader(settings.kafka, topics.tasks, self.tasks),
        ]
        self._progress_every = progress_every
        self._last_progress = time.monotonic()
        self.engine = TransactionalEngine(
            settings.kafka,
            self.router,
            group_id=f"{topics.prefix}-router",
            transactional_id=f"{topics.prefix}-router-{instance_id}",
            on_batch=self._progress,
        )
        self._started = False

    def _progress(self, stats: EngineStats) -> None:
        now = time.monotonic()
        if now - self._last_progress >= self._progress_every:
            self._last_progress = now
            _log.info("router.progress", records=stats.records, batches=stats.batches, **stats.verdicts)

    async def start(self) -> None:
        if self._started:
            return
        for reader in self._readers:
            await reader.start()
        await self.engine.start()
        self._started = True
        _log.info("router.started", clinics=len(self.directory), tasks=len(self.tasks))

    def request_stop(self) -> None:
        self.engine.request_stop()

    async def run(self, *, handle_signals: bool = True) -> None:
        """Route until SIGINT/SIGTERM (or `request_stop`), then stop gracefully."""
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM) if handle_signals else ()
        for sig in signals:
            loop.add_signal_handler(sig, self.request_stop)
        try:
            await self.engine.run()
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
        for reader in self._readers:
            with contextlib.suppress(Exception):
                await reader.stop()
        stats = self.engine.stats
        _log.info("router.stopped", records=stats.records, batches=stats.batches, **stats.verdicts)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
