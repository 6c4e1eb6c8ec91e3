"""A Kafka for one run: the configured one if it answers, else a local broker started for the run."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

from .local_kafka import LocalKafka, LocalKafkaConfig, free_port
from .readiness import probe_metadata

__all__ = ["BorrowedKafka", "acquire_kafka"]


@dataclass(slots=True)
class BorrowedKafka:
    bootstrap: str
    # Set only when this run started the broker itself, and so must stop it.
    runner: LocalKafka | None = None

    @property
    def description(self) -> str:
        return f"{self.bootstrap} (started for this run)" if self.runner else f"{self.bootstrap} (existing)"

    async def release(self) -> None:
        """Stop the broker if this run started it, and drop its data (the logs stay)."""
        runner, self.runner = self.runner, None
        if runner is None:
            return
        await asyncio.to_thread(runner.stop)
        shutil.rmtree(runner.data_dir / "data", ignore_errors=True)


async def acquire_kafka(configured: str, data_dir: Path) -> BorrowedKafka:
    """Reuse `configured` when it answers a metadata request; otherwise start one on a free port."""
    if await probe_metadata(configured):
        return BorrowedKafka(configured)
    runner = LocalKafka(LocalKafkaConfig(data_dir=data_dir, port=free_port()))
    # start() blocks (JVM start-up, readiness polling) and runs its own event loop to probe.
    bootstrap = await asyncio.to_thread(runner.start)
    return BorrowedKafka(bootstrap, runner)
