"""prik on a real 3-node Kafka cluster: the runner's nodes, and a node that crashes mid-stream."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from consumers import Backoff, ClinicConsumer, ReferenceLps, WebhookDeliverer
from contracts import Message, Outcome, Receipt
from deploy.local_kafka import LocalKafkaCluster, LocalKafkaConfig, consecutive_free_ports
from prik.kafka import admin_client
from prik.runner import run_to_end
from prik.settings import KafkaSettings
from producers import Publisher, read_replies, video_queue_notice

from .conftest import CLINIC, OTHER_CLINIC, ClusterWorld, KafkaCluster, RouterProcess

pytestmark = pytest.mark.cluster

VIDEO = "minlaege-video"
CPR = "0101701234"
STREAM = 2000
CHUNK = 100


def prik_kafka(cluster: KafkaCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prik", "kafka", *args, "--data-dir", str(cluster.runner.data_dir)],
        capture_output=True,
        text=True,
        timeout=180,
        env=os.environ,
        check=False,
    )


def test_status_lists_every_node_and_start_brings_a_killed_one_back(kafka_cluster: KafkaCluster) -> None:
    status = prik_kafka(kafka_cluster, "status")
    assert status.returncode == 0, status.stderr
    lines = status.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == [
        "node 1 127.0.0.1",
        "node 2 127.0.0.1",
        "node 3 127.0.0.1",
    ]
    assert all(": running (pid " in line for line in lines[:3])
    assert lines[3].startswith(f"{kafka_cluster.bootstrap} (PLAINTEXT")

    kafka_cluster.kill(3)
    down = prik_kafka(kafka_cluster, "status")
    assert down.returncode == 1
    assert ": not running" in down.stdout.splitlines()[2]

    again = prik_kafka(kafka_cluster, "start")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == kafka_cluster.bootstrap
    assert "started node 3 again" in again.stderr
    assert prik_kafka(kafka_cluster, "status").returncode == 0


async def _transaction_coordinator_leader(world: ClusterWorld) -> int:
    """The node leading `__transaction_state` (one partition): the router's transaction coordinator."""
    async with admin_client(world.kafka) as admin:
        (described,) = await admin.describe_topics(["__transaction_state"])
    leader: int = described["partitions"][0]["leader"]
    return leader


async def _replicas_and_min_isr(world: ClusterWorld, topic: str) -> tuple[set[int], str]:
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType  # noqa: PLC0415 - one test

    async with admin_client(world.kafka) as admin:
        (described,) = await admin.describe_topics([topic])
        (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    sizes = {len(p["replicas"]) for p in described["partitions"]}
    ((_code, _message, _type, _name, entries),) = response.resources
    return sizes, {e[0]: e[1] for e in entries}["min.insync.replicas"]


def notice(clinic: str, number: int) -> Message:
    return video_queue_notice(VIDEO, clinic, event="joined", queue_entry_id=f"q-{number}", cpr=CPR)


async def _routed(world: ClusterWorld, expected: int, within: float) -> Counter[str]:
    """Message ids on both delivery topics (read_committed), once `expected` are there or time is up."""
    deadline = time.monotonic() + within
    while True:
        counts: Counter[str] = Counter()
        for lps in ("lps-xmo", "lps-other"):
            counts.update(m.id for _, m, _ in await world.read(world.topics.deliver(lps)) if m is not None)
        if counts.total() >= expected or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.5)


async def _receipts(world: ClusterWorld, expected: int, within: float) -> list[Receipt]:
    """The sender's receipts, once `expected` are there or time is up."""
    deadline = time.monotonic() + within
    while True:
        got = [m async for m in read_replies(world.kafka, world.topics, VIDEO) if isinstance(m, Receipt)]
        if len(got) >= expected or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.5)


async def test_a_node_killed_mid_stream_loses_and_duplicates_nothing(
    kafka_cluster: KafkaCluster, cluster_world: ClusterWorld
) -> None:
    world = cluster_world
    assert world.report.replication_line() == "replication 3, min.insync.replicas 2"
    assert await _replicas_and_min_isr(world, world.topics.ingress(VIDEO)) == ({3}, "2")

    router = RouterProcess(world)
    async with contextlib.AsyncExitStack() as stack:
        # Last out: the killed node comes back (the runner probes on an event loop of its own,
        # so off this event loop), after the router and the consumers have stopped.
        stack.push_async_callback(asyncio.to_thread, kafka_cluster.restart)
        router.start()
        stack.callback(router.terminate)
        lps = await stack.enter_async_context(ReferenceLps())
        # Both LPSs' consumers run through the crash too, delivering to the one reference LPS.
        for lps_id in ("lps-xmo", "lps-other"):
            consumer = ClinicConsumer(
                world.kafka,
                world.topics,
                lps_id,
                WebhookDeliverer(lps.url, lps.secret, total_timeout=5),
                backoff=Backoff(base=0.2, cap=1.0),
                http_port=0,
                stop_grace=2.0,
            )
            await stack.enter_async_context(consumer)
        await _stream_through_a_crash(kafka_cluster, world, router, lps)


async def _stream_through_a_crash(
    kafka_cluster: KafkaCluster, world: ClusterWorld, router: RouterProcess, lps: ReferenceLps
) -> None:
    router.wait_started(timeout=90)
    victim = await _transaction_coordinator_leader(world)
    sent = [notice(CLINIC if i % 2 else OTHER_CLINIC, i) for i in range(STREAM)]
    async with Publisher(world.kafka, VIDEO, world.topics) as publisher:
        for start in range(0, STREAM, CHUNK):
            if start == STREAM // 2:
                # A crash, not a shutdown: the coordinator of the router's
                # transactions goes with it, and a third of the partition leaders.
                kafka_cluster.kill(victim)
            await publisher.publish_many(sent[start : start + CHUNK])

    counts = await _routed(world, STREAM, within=120)
    assert router.process is not None
    assert router.process.poll() is None, router.output().decode()[-3000:]
    missing = {m.id for m in sent} - set(counts)
    assert not missing, f"{len(missing)} of {STREAM} never routed"
    assert {i: n for i, n in counts.items() if n > 1} == {}
    assert set(counts) == {m.id for m in sent}

    # Delivered, each with one final receipt.
    await lps.wait_for(STREAM, timeout=120)
    assert lps.ids() == {m.id for m in sent}
    receipts = await _receipts(world, STREAM, within=60)
    per_message = Counter(r.data.message_id for r in receipts)
    assert {i: n for i, n in per_message.items() if n > 1} == {}
    assert set(per_message) == {m.id for m in sent}
    assert {r.data.outcome for r in receipts} == {Outcome.DELIVERED}


def test_a_secure_cluster_starts_from_the_cli_and_stops_whole(tmp_path: Path) -> None:
    """`--brokers 3 --secure`: each node on SASL_SSL with one CA and admin password; `stop` ends all three."""
    data_dir = tmp_path / "secure-cluster"
    port = consecutive_free_ports(3)

    def prik(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "prik", "kafka", *args, "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )

    started = prik("start", "--brokers", "3", "--secure", "--port", str(port), "--timeout", "180")
    try:
        assert started.returncode == 0, started.stderr
        bootstrap = ",".join(f"127.0.0.1:{port + i}" for i in range(3))
        assert started.stdout.strip() == bootstrap
        assert f"PRIK_KAFKA__BOOTSTRAP={bootstrap} PRIK_KAFKA__SECURITY_PROTOCOL=SASL_SSL" in started.stderr
        runner = LocalKafkaCluster(LocalKafkaConfig(data_dir=data_dir), 3)
        admin = runner.client_settings()
        assert admin.ca_file == data_dir / "tls" / "ca.pem"
        for node_port in range(port, port + 3):
            # Each node alone, as admin over TLS: the one certificate covers every loopback node.
            alone = admin.model_copy(update={"bootstrap": f"127.0.0.1:{node_port}"})
            assert run_to_end(_brokers_seen(alone)) == 3
    finally:
        stopped = prik("stop")
    assert stopped.stdout.strip() == f"stopped 3 node(s) (data kept in {data_dir})"
    assert prik("status").returncode == 1


async def _brokers_seen(kafka: KafkaSettings) -> int:
    async with admin_client(kafka) as admin:
        cluster = await admin.describe_cluster()
    return len(cluster["brokers"])
