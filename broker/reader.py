"""Reads a compacted topic into a table: all of it at start, then every change."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka import TopicPartition

from contracts import KafkaError
from prik.kafka import kafka_errors, make_consumer
from prik.logs import get_logger
from prik.settings import KafkaSettings

from .tables import Table

__all__ = ["CompactedReader"]

_log = get_logger(__name__)


class CompactedReader:
    """A group-less, read_committed reader of every partition of one topic."""

    def __init__(self, kafka: KafkaSettings, topic: str, table: Table[Any]) -> None:
        self._kafka = kafka
        self._topic = topic
        self._table = table
        # A short long-poll: catch_up waits for the next fetch, and the router
        # waits on catch_up when a task status names a task it has not read yet.
        self._consumer = make_consumer(
            kafka, group_id=None, auto_offset_reset="earliest", fetch_max_wait_ms=50
        )
        self._task: asyncio.Task[None] | None = None
        self._progress = asyncio.Condition()
        self._partitions: list[TopicPartition] = []
        self._started = False

    async def start(self, load_within: float = 60.0) -> None:
        with kafka_errors(f"reading {self._topic}"):
            await self._consumer.start()
            partitions = self._consumer.partitions_for_topic(self._topic)
            if partitions is None:
                await self._consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public refresh
                partitions = self._consumer.partitions_for_topic(self._topic)
        if not partitions:
            await self._consumer.stop()
            msg = f"topic {self._topic} does not exist (run `prik topics apply`)"
            raise KafkaError(msg)
        self._partitions = [TopicPartition(self._topic, p) for p in sorted(partitions)]
        self._consumer.assign(self._partitions)
        await self._consumer.seek_to_beginning(*self._partitions)
        self._started = True
        self._task = asyncio.create_task(self._run(), name=f"reader:{self._topic}")
        await self.catch_up(load_within)
        _log.info("table.loaded", table=self._table.name, rows=len(self._table))

    async def _run(self) -> None:
        try:
            while True:
                batches = await self._consumer.getmany(timeout_ms=500, max_records=5000)
                for records in batches.values():
                    for record in records:
                        self._table.apply(record.key, record.value)
                async with self._progress:
                    self._progress.notify_all()
        except Exception as exc:
            _log.error("table.reader_failed", table=self._table.name, error=type(exc).__name__)
            raise
        finally:
            # Whoever waits in catch_up must learn that no progress is coming.
            async with self._progress:
                self._progress.notify_all()

    async def catch_up(self, within: float = 15.0) -> None:
        """Return once every change committed before this call is in the table.

        Bounded well below the router's poll interval and transaction timeout: a
        partition without a leader fails the batch (retried), not the group.
        """
        with kafka_errors(f"reading {self._topic}"):
            ends = await self._consumer.end_offsets(self._partitions)
        try:
            async with asyncio.timeout(within), self._progress:
                while not await self._reached(ends):
                    if self._task is not None and self._task.done():
                        msg = f"the reader of {self._topic} stopped"
                        raise KafkaError(msg, retriable=True)
                    await self._progress.wait()
        except TimeoutError:
            msg = f"reading {self._topic} to its end took over {within:.0f}s"
            raise KafkaError(msg, retriable=True) from None

    async def _reached(self, ends: dict[TopicPartition, int]) -> bool:
        for tp, end in ends.items():
            if await self._consumer.position(tp) < end:
                return False
        return True

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # Bounded: a broker that stopped answering must not hold up shutdown.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._consumer.stop(), 10)
