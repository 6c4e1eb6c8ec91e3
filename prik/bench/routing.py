"""Router throughput against a transactional pass-through on the same broker and data.

The baseline moves every record through the very same engine (consume a batch,
produce, send offsets, commit the transaction) but decides nothing; the ratio
router / baseline is what prik's rules cost, independent of how busy the
machine is today.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from broker import (
    Batch,
    DedupWindow,
    DirectoryTable,
    Incoming,
    Outgoing,
    Routed,
    Router,
    RouterService,
    TaskTable,
)
from broker.engine import EngineStats, TransactionalEngine
from contracts import DirectoryEntry, Tenants, Topics
from deploy.directory import load_directory
from deploy.topics import apply_topics
from prik.settings import Settings
from producers import Publisher, build

__all__ = ["RoutingResult", "bench_routing"]

SENDER = "bench-video"
LPS = "bench-lps"
TENANTS_TOML = f"""
[[tenant]]
id = "{SENDER}"
role = "producer"
may_send = ["dk.prik.advisory.video-queue.v1"]

[[tenant]]
id = "{LPS}"
role = "lps"
"""


@dataclass(frozen=True, slots=True)
class RoutingResult:
    messages: int
    baseline_per_second: float
    router_per_second: float
    # This process's CPU per record while each drained (the engine, aiokafka and, for the router, the rules):
    # when both are CPU-bound, the ratio is about baseline_cpu_us / router_cpu_us.
    baseline_cpu_us: float
    router_cpu_us: float

    @property
    def ratio(self) -> float:
        return self.router_per_second / self.baseline_per_second


class _PassThrough(Router):
    """Forwards every record as it is: the engine's cost without the rules."""

    async def route(self, rec: Incoming, batch: Batch) -> Routed:
        out = Outgoing(self.topics.deliver(LPS), rec.key, rec.value, rec.headers)
        return Routed("routed", "", [out])


async def _drain(engine: TransactionalEngine, total: int, within: float) -> tuple[float, float]:
    """Seconds and this process's CPU seconds from the engine's start until it committed `total` records."""
    done = asyncio.Event()

    def on_batch(stats: EngineStats) -> None:
        if stats.records >= total:
            done.set()

    engine.on_batch = on_batch
    await engine.start()
    began, cpu = time.perf_counter(), time.process_time()
    task = asyncio.create_task(engine.run())
    try:
        await asyncio.wait_for(done.wait(), within)
        return time.perf_counter() - began, time.process_time() - cpu
    finally:
        engine.request_stop()
        await task
        await engine.stop()


async def bench_routing(
    settings: Settings,
    tenants: Tenants,
    messages: int,
    progress: Callable[[str], None],
) -> RoutingResult:
    topics: Topics = settings.topics
    await apply_topics(settings.kafka, topics, tenants)
    clinics = [f"{100000000000 + i}" for i in range(200)]
    await load_directory(settings.kafka, topics, [DirectoryEntry(sor=sor, lps=LPS) for sor in clinics])

    progress(f"publishing {messages} video-queue notices")
    async with Publisher(settings.kafka, SENDER, topics) as publisher:
        for start in range(0, messages, 1000):
            batch = [
                build.video_queue_notice(
                    SENDER, clinics[i % len(clinics)], event="joined", queue_entry_id=f"q{i}"
                )
                for i in range(start, min(messages, start + 1000))
            ]
            await publisher.publish_many(batch)

    progress("baseline: transactional pass-through")
    passthrough = _PassThrough(topics, lambda: tenants, DirectoryTable(), TaskTable(), DedupWindow())
    baseline = TransactionalEngine(
        settings.kafka,
        passthrough,
        group_id=f"{topics.prefix}-baseline",
        transactional_prefix=f"{topics.prefix}-b",
    )
    baseline_seconds, baseline_cpu = await _drain(baseline, messages, within=600)

    progress("router: the same records through every rule")
    service = RouterService(settings, lambda: tenants, instance_id="bench")
    await service.load_state()
    try:
        router_seconds, router_cpu = await _drain(service.engine, messages, within=600)
    finally:
        await service.close_state()
    return RoutingResult(
        messages,
        messages / baseline_seconds,
        messages / router_seconds,
        baseline_cpu_us=baseline_cpu / messages * 1e6,
        router_cpu_us=router_cpu / messages * 1e6,
    )
