"""What `prik bench publisher` and `prik bench consumer` share: fresh topics, the notices, offsets.

Each run provisions its own topics under a fresh prefix on the broker at
PRIK_KAFKA__BOOTSTRAP and deletes them when it ends, so a benchmark leaves the
broker as it found it. The notices are video-queue notices to 200 clinics, the
same kind `prik bench pipeline` publishes.
"""

from __future__ import annotations

import contextlib
import secrets
import statistics
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka.structs import TopicPartition

from contracts import VideoQueueNotice, parse_tenants
from deploy.topics import apply_topics, delete_topics_under
from prik.kafka import admin_client, kafka_errors, make_consumer
from prik.settings import KafkaSettings, Settings
from producers import build, partitions_of

from .load import CLINICS
from .routing import LPS, SENDER, TENANTS_TOML

__all__ = [
    "LPS",
    "SENDER",
    "Rounds",
    "Say",
    "committed_total",
    "end_offsets_total",
    "notices",
    "provisioned",
]

Say = Callable[[str], None]


def notices(count: int) -> list[VideoQueueNotice]:
    """`count` distinct video-queue notices of tenant SENDER, round-robin over 200 clinics."""
    return [
        build.video_queue_notice(SENDER, CLINICS[i % len(CLINICS)], event="joined", queue_entry_id=f"b{i}")
        for i in range(count)
    ]


@contextlib.asynccontextmanager
async def provisioned(base: Settings, tag: str) -> AsyncIterator[Settings]:
    """Settings on fresh topics (prefix `bench-<tag>-<time>-<hex>`), deleted again on the way out."""
    prefix = f"bench-{tag}-{int(time.time())}-{secrets.token_hex(2)}"
    settings = base.model_copy(update={"topic_prefix": prefix})
    try:
        await apply_topics(settings.kafka, settings.topics, parse_tenants(TENANTS_TOML))
        yield settings
    finally:
        with contextlib.suppress(Exception):
            await delete_topics_under(settings.kafka, prefix)


async def end_offsets_total(kafka: KafkaSettings, topic: str) -> int:
    """Records on `topic` (the sum of its partitions' end offsets; read_committed: committed ones)."""
    tps = await partitions_of(kafka, topic)
    consumer = make_consumer(kafka, group_id=None, client_id="prik-bench-offsets")
    with kafka_errors(f"reading the end offsets of {topic}"):
        await consumer.start()
        try:
            ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        finally:
            await consumer.stop()
    return sum(ends.values())


async def committed_total(kafka: KafkaSettings, group: str, topic: str) -> int:
    """The offsets `group` has committed on `topic`, summed over its partitions."""
    async with admin_client(kafka) as admin:
        with kafka_errors(f"reading the offsets of group {group}"):
            offsets = await admin.list_consumer_group_offsets(group)
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)


@dataclass(slots=True)
class Rounds:
    """One stage's rounds: messages per second, and this process's CPU time per message."""

    rates: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)

    def add(self, messages: int, seconds: float, cpu_seconds: float) -> None:
        self.rates.append(messages / seconds)
        self.cpu_us.append(cpu_seconds / messages * 1e6)

    def summary(self) -> dict[str, Any]:
        """The best round (what the ratio compares), the median, each round; the least CPU per message.

        CPU per message hardly depends on how busy the shared machine is, so it shows
        a change of prik's cost that throughput alone would hide in the noise.
        """
        return {
            "per_second": round(max(self.rates), 1),
            "median_per_second": round(statistics.median(self.rates), 1),
            "rounds_per_second": [round(r, 1) for r in self.rates],
            "cpu_us_per_message": round(min(self.cpu_us), 2),
        }
