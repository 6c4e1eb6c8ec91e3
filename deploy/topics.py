"""Topic provisioning: every topic of DESIGN.md for a tenants file, applied idempotently."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from contracts import KafkaError, Topics
from contracts.tenants import Tenants
from prik.kafka import admin_client, kafka_errors
from prik.settings import KafkaSettings

__all__ = [
    "CO_PARTITIONED",
    "DLQ_MAX_BATCH_BYTES",
    "INGRESS_MAX_BATCH_BYTES",
    "ApplyReport",
    "TopicSpec",
    "apply_topics",
    "delete_topics_under",
    "min_insync_replicas",
    "topic_specs",
]

# The router co-partitions by task id across every ingress topic and the tasks
# topic: the same key must land on the same partition number everywhere, so all
# of them need exactly this many partitions.
CO_PARTITIONED = 6
DELIVER_PARTITIONS = 6
REPLIES_PARTITIONS = 3
DLQ_PARTITIONS = 3
DIRECTORY_PARTITIONS = 3
MAX_REPLICATION = 3

# Kafka's max.message.bytes bounds a producer's record *batch*, not one record, so it
# cannot be PRIK_MAX_MESSAGE_BYTES itself (a sender's batch of small messages would be
# refused whole): the router refuses single records over that limit. What the topics
# match is each other: any record an ingress topic takes fits, as a dead letter with
# its error headers, into the dead-letter topic.
INGRESS_MAX_BATCH_BYTES = 1024 * 1024
DLQ_MAX_BATCH_BYTES = INGRESS_MAX_BATCH_BYTES + 64 * 1024

_DAY_MS = 24 * 60 * 60 * 1000
_WEEK = str(7 * _DAY_MS)
_MONTH = str(30 * _DAY_MS)

_TOPIC_EXISTS = 36
_UNKNOWN_TOPIC = 3
_METADATA_ATTEMPTS = 20
_METADATA_PAUSE = 0.25
# DescribeConfigs config_source: set on the topic itself (as opposed to broker defaults).
_DYNAMIC_TOPIC_CONFIG = 1


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic as it should be."""

    name: str
    partitions: int
    configs: Mapping[str, str]


@dataclass(slots=True)
class ApplyReport:
    """What `apply_topics` did, per topic name."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    # One human-readable line per change or per thing left alone on purpose.
    notes: list[str] = field(default_factory=list)
    # What new topics get: min(3, brokers), and min.insync.replicas one less (at least 1).
    replication: int = 1
    min_insync_replicas: int = 1

    def replication_line(self) -> str:
        return f"replication {self.replication}, min.insync.replicas {self.min_insync_replicas}"

    def summary(self) -> str:
        return f"created {len(self.created)}, updated {len(self.updated)}, unchanged {len(self.unchanged)}"


def min_insync_replicas(replication: int) -> int:
    """One replica may be down and writes with acks=all go on: 2 of 3, 1 of 1 or 2."""
    return max(1, replication - 1)


def topic_specs(topics: Topics, tenants: Tenants, replication: int) -> list[TopicSpec]:
    """Every topic prik needs for `tenants`, with its partitions and configs."""
    min_isr = str(min_insync_replicas(replication))

    def spec(name: str, partitions: int, **configs: str) -> TopicSpec:
        return TopicSpec(name, partitions, MappingProxyType({"min.insync.replicas": min_isr, **configs}))

    week = {"cleanup.policy": "delete", "retention.ms": _WEEK}
    # The broker's clock, not the sender's: accounting windows and the dedup window's
    # read-back (offsets_for_times) go by record time, and a sender could lie about it.
    ingress = {
        **week,
        "max.message.bytes": str(INGRESS_MAX_BATCH_BYTES),
        "message.timestamp.type": "LogAppendTime",
    }
    specs = [spec(topics.ingress(t), CO_PARTITIONED, **ingress) for t in tenants.ids]
    specs += [spec(topics.deliver(lps), DELIVER_PARTITIONS, **week) for lps in tenants.lps_ids]
    specs += [spec(topics.replies(t), REPLIES_PARTITIONS, **week) for t in tenants.ids]
    specs += [
        spec(
            topics.dlq,
            DLQ_PARTITIONS,
            **{
                "cleanup.policy": "delete",
                "retention.ms": _MONTH,
                "max.message.bytes": str(DLQ_MAX_BATCH_BYTES),
            },
        ),
        spec(topics.directory, DIRECTORY_PARTITIONS, **{"cleanup.policy": "compact"}),
        spec(topics.tasks, CO_PARTITIONED, **{"cleanup.policy": "compact"}),
    ]
    return specs


async def delete_topics_under(kafka: KafkaSettings, prefix: str) -> int:
    """Delete every topic named `<prefix>.…`: a benchmark leaves the broker as it found it."""
    with kafka_errors(f"deleting the topics under {prefix}"):
        async with admin_client(kafka) as admin:
            names = [t for t in await admin.list_topics() if t.startswith(f"{prefix}.")]
            if names:
                await admin.delete_topics(names)
    return len(names)


async def _replication(admin: AIOKafkaAdminClient) -> int:
    cluster = await admin.describe_cluster()
    return max(1, min(MAX_REPLICATION, len(cluster["brokers"])))


async def _existing_partitions(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    # Describing a missing topic by name may auto-create it with broker defaults
    # (where auto.create.topics.enable is on), so only existing ones are described.
    everything = set(await admin.list_topics())
    present = [n for n in names if n in everything]
    if not present:
        return {}
    described = await admin.describe_topics(present)
    found: dict[str, int] = {}
    for topic in described:
        if topic["error_code"] == _UNKNOWN_TOPIC:
            continue
        if topic["error_code"]:
            msg = f"describing {topic['topic']}: Kafka error code {topic['error_code']}"
            raise KafkaError(msg, retriable=True)
        found[topic["topic"]] = len(topic["partitions"])
    return found


async def _visible_partitions(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    """Like `_existing_partitions` for topics known to exist: waits until the broker's metadata shows them."""
    found: dict[str, int] = {}
    for _ in range(_METADATA_ATTEMPTS):
        found = await _existing_partitions(admin, names)
        if len(found) == len(names):
            return found
        # KRaft brokers learn of a topic created a moment ago a little later than its controller.
        await asyncio.sleep(_METADATA_PAUSE)
    missing = ", ".join(sorted(set(names) - set(found)))
    msg = f"topics exist but do not show in the metadata yet: {missing}"
    raise KafkaError(msg, retriable=True)


async def _current_configs(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, Any]]:
    """Per topic: name -> (value, config_source) of every config Kafka reports."""
    if not names:
        return {}
    current: dict[str, dict[str, Any]] = {}
    for attempt in range(_METADATA_ATTEMPTS):
        resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names if n not in current]
        responses = await admin.describe_configs(resources)
        for response in responses:
            for error_code, error_message, _type, name, entries in response.resources:
                # A topic created a moment ago may not have reached every broker's metadata yet.
                if error_code == _UNKNOWN_TOPIC and attempt + 1 < _METADATA_ATTEMPTS:
                    continue
                if error_code:
                    reason = error_message or f"Kafka error code {error_code}"
                    msg = f"reading the configs of {name}: {reason}"
                    raise KafkaError(msg, retriable=error_code == _UNKNOWN_TOPIC)
                current[name] = {entry[0]: (entry[1], entry[3]) for entry in entries}
        if len(current) == len(names):
            break
        await asyncio.sleep(_METADATA_PAUSE)
    return current


async def _create(admin: AIOKafkaAdminClient, specs: list[TopicSpec], replication: int) -> list[str]:
    if not specs:
        return []
    response = await admin.create_topics(
        [NewTopic(s.name, s.partitions, replication, topic_configs=dict(s.configs)) for s in specs]
    )
    created: list[str] = []
    for topic, code, message in response.topic_errors:
        if code == 0:
            created.append(topic)
        elif code != _TOPIC_EXISTS:  # another `apply` won the race: the update pass covers it
            msg = f"creating topic {topic}: {message or f'Kafka error code {code}'}"
            raise KafkaError(msg)
    return created


async def _alter(admin: AIOKafkaAdminClient, spec: TopicSpec, current: dict[str, Any]) -> None:
    # AlterConfigs replaces a topic's whole set of overrides, so the ones an
    # operator set by hand are carried over rather than silently reset.
    wanted = {name: value for name, (value, source) in current.items() if source == _DYNAMIC_TOPIC_CONFIG}
    wanted |= spec.configs
    responses = await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, spec.name, wanted)])
    for response in responses:
        for error_code, error_message, _type, name in response.resources:
            if error_code:
                msg = f"updating the configs of {name}: {error_message or error_code}"
                raise KafkaError(msg)


async def _reconcile(
    admin: AIOKafkaAdminClient, spec: TopicSpec, partitions: int, current: dict[str, Any], report: ApplyReport
) -> None:
    changed = False
    differing = sorted(k for k, v in spec.configs.items() if current.get(k, (None, None))[0] != v)
    if differing:
        await _alter(admin, spec, current)
        report.notes.append(f"{spec.name}: set {', '.join(f'{k}={spec.configs[k]}' for k in differing)}")
        changed = True
    if partitions < spec.partitions:
        await admin.create_partitions({spec.name: NewPartitions(total_count=spec.partitions)})
        report.notes.append(f"{spec.name}: partitions {partitions} -> {spec.partitions}")
        changed = True
    elif partitions > spec.partitions:
        # Fewer partitions would move keys between partitions and break per-key order.
        report.notes.append(f"{spec.name}: has {partitions} partitions, wanted {spec.partitions}; left as is")
    (report.updated if changed else report.unchanged).append(spec.name)


async def apply_topics(kafka: KafkaSettings, topics: Topics, tenants: Tenants) -> ApplyReport:
    """Create what is missing, fix configs that differ, grow partitions that are too few.

    Idempotent: a second run changes nothing and reports every topic unchanged.
    Partitions are never reduced.
    """
    report = ApplyReport()
    async with admin_client(kafka) as admin:
        with kafka_errors("applying topics"):
            replication = await _replication(admin)
            report.replication = replication
            report.min_insync_replicas = min_insync_replicas(replication)
            specs = topic_specs(topics, tenants, replication)
            existing = await _existing_partitions(admin, [s.name for s in specs])
            report.created = await _create(admin, [s for s in specs if s.name not in existing], replication)
            rest = [s for s in specs if s.name not in report.created]
            existing = await _visible_partitions(admin, [s.name for s in rest]) if rest else {}
            configs = await _current_configs(admin, [s.name for s in rest])
            for spec in rest:
                await _reconcile(admin, spec, existing[spec.name], configs[spec.name], report)
    return report
