"""`apply_topics` and `prik topics apply` against a real broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka.admin import NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from contracts import Topics
from deploy.topics import apply_topics
from prik.kafka import admin_client
from prik.settings import KafkaSettings
from prik.tenants import load_tenants

pytestmark = pytest.mark.kafka

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "tenants.example.toml"
WEEK_MS = str(7 * 24 * 3600 * 1000)
MONTH_MS = str(30 * 24 * 3600 * 1000)


State = dict[str, tuple[int, dict[str, str]]]


async def _describe_once(kafka: KafkaSettings, names: list[str]) -> State:
    async with admin_client(kafka) as admin:
        topics = await admin.describe_topics(names)
        configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    partitions = {t["topic"]: len(t["partitions"]) for t in topics if t["error_code"] == 0}
    values = {name: {e[0]: e[1] for e in entries} for r in configs for _, _, _, name, entries in r.resources}
    return {n: (partitions.get(n, 0), values.get(n, {})) for n in names}


async def _describe(kafka: KafkaSettings, names: list[str], until: Callable[[State], bool]) -> State:
    # A broker's metadata follows its controller a moment later; on a busy machine, a second or so.
    state = await _describe_once(kafka, names)
    for _ in range(40):
        if until(state):
            break
        await asyncio.sleep(0.25)
        state = await _describe_once(kafka, names)
    return state


async def test_apply_creates_every_topic_then_reports_all_unchanged(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    kafka = KafkaSettings(bootstrap=kafka_bootstrap)
    topics = Topics(topic_prefix)
    tenants = load_tenants(EXAMPLE)

    first = await apply_topics(kafka, topics, tenants)

    ingress = [topics.ingress(t) for t in tenants.ids]
    deliver = [topics.deliver(lps) for lps in tenants.lps_ids]
    replies = [topics.replies(t) for t in tenants.ids]
    everything = [*ingress, *deliver, *replies, topics.dlq, topics.directory, topics.tasks]
    assert sorted(first.created) == sorted(everything)
    assert first.updated == first.unchanged == []

    state = await _describe(kafka, everything, lambda st: all(st[n][1] for n in everything))
    # The router co-partitions by task id: every ingress topic and the tasks topic alike.
    assert {state[n][0] for n in [*ingress, topics.tasks]} == {6}
    assert {state[n][0] for n in deliver} == {6}
    assert {state[n][0] for n in replies} == {3}
    assert state[topics.dlq][0] == state[topics.directory][0] == 3
    for name in [*ingress, *deliver, *replies]:
        assert state[name][1]["cleanup.policy"] == "delete"
        assert state[name][1]["retention.ms"] == WEEK_MS
    assert state[topics.dlq][1]["retention.ms"] == MONTH_MS
    assert state[topics.directory][1]["cleanup.policy"] == "compact"
    assert state[topics.tasks][1]["cleanup.policy"] == "compact"
    assert all(state[n][1]["min.insync.replicas"] == "1" for n in everything)

    second = await apply_topics(kafka, topics, tenants)
    assert second.created == second.updated == []
    assert sorted(second.unchanged) == sorted(everything)
    assert second.summary() == f"created 0, updated 0, unchanged {len(everything)}"


async def test_apply_fixes_drifted_configs_grows_partitions_never_shrinks(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    kafka = KafkaSettings(bootstrap=kafka_bootstrap)
    topics = Topics(topic_prefix)
    tenants = load_tenants(EXAMPLE)
    small = topics.ingress("minlaege-video")
    drifted = topics.directory
    big = topics.replies("lps-xmo")
    async with admin_client(kafka) as admin:
        await admin.create_topics(
            [
                NewTopic(small, 2, 1, topic_configs={"retention.ms": WEEK_MS, "cleanup.policy": "delete"}),
                NewTopic(drifted, 3, 1, topic_configs={"cleanup.policy": "delete", "segment.ms": "3600000"}),
                NewTopic(big, 5, 1, topic_configs={"retention.ms": WEEK_MS, "cleanup.policy": "delete"}),
            ]
        )

    report = await apply_topics(kafka, topics, tenants)

    assert small in report.updated
    assert drifted in report.updated
    assert big in report.unchanged
    assert any("partitions 2 -> 6" in n for n in report.notes)
    assert any(big in n and "left as is" in n for n in report.notes)
    state = await _describe(
        kafka,
        [small, drifted, big],
        lambda st: st[small][0] == 6 and st[drifted][1].get("cleanup.policy") == "compact",
    )
    assert state[small][0] == 6
    assert state[drifted][1]["cleanup.policy"] == "compact"
    assert state[drifted][1]["segment.ms"] == "3600000"  # an operator's own override survives
    assert state[big][0] == 5

    again = await apply_topics(kafka, topics, tenants)
    assert again.created == again.updated == []


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=90, check=False)


def test_cli_topics_apply_prints_a_summary(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PRIK_KAFKA__BOOTSTRAP": kafka_bootstrap,
        "PRIK_TOPIC_PREFIX": topic_prefix,
        "PRIK_TENANTS": str(EXAMPLE),
    }
    run = [sys.executable, "-m", "prik", "topics", "apply"]
    first = _run(run, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().endswith("created 15, updated 0, unchanged 0")
    assert f"created {topic_prefix}.tasks" in first.stdout
    second = _run(run, env=env)
    # One broker: replication 1, and the line says so before the summary.
    assert second.stdout.strip() == "replication 1, min.insync.replicas 1\ncreated 0, updated 0, unchanged 15"

    no_tenants = {k: v for k, v in env.items() if k != "PRIK_TENANTS"}
    missing = _run(run, env=no_tenants)
    assert missing.returncode == 2
    assert missing.stderr.strip() == "prik: error: no tenants file: set PRIK_TENANTS or pass --tenants"
    absent = _run([*run, "--tenants", str(tmp_path / "nope.toml")], env=env)
    assert absent.returncode == 2
    assert "does not exist" in absent.stderr
