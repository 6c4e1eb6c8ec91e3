"""Router throughput with 1, 2, 3… instances, each a `prik broker run` process, on the same data.

For each count the same pre-published backlog (same messages, same bytes) waits
on fresh topics; the routers start together and the rate is read off the group's
committed offsets between 10 % and 90 % of the backlog, so start-up and the
first rebalances do not count. Ratios are to one router in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError as AIOKafkaError

from contracts import DirectoryEntry, Message, PrikError
from deploy.directory import load_directory
from prik.kafka import admin_client
from prik.settings import Settings
from producers import Publisher

from .routing import LPS, SENDER, TENANTS_TOML
from .stage_support import notices, provisioned

__all__ = ["ScalingResult", "bench_scaling"]


@dataclass(frozen=True, slots=True)
class ScalingResult:
    routers: int
    messages: int
    per_second: float


async def _routed(admin: AIOKafkaAdminClient, group: str, ingress: str) -> int:
    """Records of `ingress` the router group has committed."""
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except AIOKafkaError:
        # A group (or the offsets topic of a fresh cluster) that does not exist yet.
        return 0
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == ingress and meta.offset > 0)


def _spawn(settings: Settings, tenants_file: Path, name: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PRIK_KAFKA__BOOTSTRAP": settings.kafka.bootstrap,
        "PRIK_TOPIC_PREFIX": settings.topic_prefix,
        "PRIK_TENANTS": str(tenants_file),
        "PRIK_LOG_LEVEL": "warning",
    }
    env.pop("PRIK_METRICS_PORT", None)
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module, arguments we built
        [sys.executable, "-m", "prik", "broker", "run", "--instance", name],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _one_count(
    base: Settings, count: int, messages: Sequence[Message], workdir: Path, progress: Callable[[str], None]
) -> ScalingResult:
    async with provisioned(base, f"r{count}") as settings:
        topics = settings.topics
        clinics = sorted({m.recipient for m in messages if m.recipient})
        await load_directory(settings.kafka, topics, [DirectoryEntry(sor=sor, lps=LPS) for sor in clinics])
        progress(f"{count} router(s): publishing {len(messages)} notices")
        async with Publisher(settings.kafka, SENDER, topics) as publisher:
            for start in range(0, len(messages), 1000):
                await publisher.publish_many(messages[start : start + 1000])
        tenants_file = workdir / "tenants.toml"
        tenants_file.write_text(TENANTS_TOML)
        progress(f"{count} router(s): routing")
        processes = [_spawn(settings, tenants_file, f"bench-{count}-{i}") for i in range(count)]
        try:
            async with admin_client(settings.kafka) as admin:
                # The publisher writes outside transactions: one offset per message, no markers.
                seconds = await _routing_time(
                    admin, processes, f"{topics.prefix}-router", topics.ingress(SENDER), len(messages)
                )
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(60)
                if process.poll() is None:
                    process.kill()
    return ScalingResult(count, len(messages), 0.8 * len(messages) / seconds)


async def _routing_time(
    admin: AIOKafkaAdminClient, processes: list[subprocess.Popen[bytes]], group: str, ingress: str, total: int
) -> float:
    """Seconds the routers took from 10 % to 90 % of the backlog committed.

    10 % counts from the last poll that saw less: a fast router may pass both marks
    between two polls, and the span is then at least one poll, never zero.
    """
    marks: dict[float, float] = {}
    deadline = time.monotonic() + 600
    last_poll = time.perf_counter()
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            msg = "a router process exited during the benchmark (run `prik broker run` alone to see why)"
            raise PrikError(msg)
        asked = time.perf_counter()
        done = await _routed(admin, group, ingress)
        if 0.1 not in marks and done >= 0.1 * total:
            marks[0.1] = last_poll
        if done >= 0.9 * total:
            return time.perf_counter() - marks[0.1]
        last_poll = asked
        await asyncio.sleep(0.05)
    msg = "the routers did not route the backlog within 600 s"
    raise PrikError(msg)


async def bench_scaling(
    settings: Settings, counts: list[int], messages: int, workdir: Path, progress: Callable[[str], None]
) -> list[ScalingResult]:
    backlog = notices(messages)
    return [await _one_count(settings, count, backlog, workdir, progress) for count in counts]
