"""The cluster tier's one local 3-node cluster, and a provisioned prik world on it (topics RF 3, min ISR 2).

`kafka_cluster` (`prik kafka start --brokers 3` on free ports) is package-scoped:
started by the tier's first test, and stopped after its last, so its three idle
JVMs (~0.2 of a core and ~1 GB together) do not sit through the other tiers.
`PRIK_TEST_CLUSTER_DIR=<data dir>` reuses a cluster already made in that folder
(started if a node is down, left running).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from contracts import DirectoryEntry, parse_tenants
from deploy.directory import load_directory
from deploy.local_kafka import LocalKafkaCluster, LocalKafkaConfig, consecutive_free_ports
from deploy.topics import ApplyReport, apply_topics
from prik.settings import KafkaSettings, Settings

if TYPE_CHECKING:
    # mypy sees tests/ as the namespace package `tests`; pytest puts tests/ itself on
    # sys.path (no __init__.py there) and names the integration tier `integration`.
    # Importing it under its pytest name shares the one module, and loads no conftest twice.
    from tests.integration.conftest import CLINIC, OTHER_CLINIC, TENANTS_TOML, RouterProcess, World
else:
    from integration.conftest import CLINIC, OTHER_CLINIC, TENANTS_TOML, RouterProcess, World

__all__ = ["CLINIC", "OTHER_CLINIC", "ClusterWorld", "KafkaCluster", "RouterProcess", "World"]


CLUSTER_BROKERS = 3


@dataclass(frozen=True)
class KafkaCluster:
    """A running local cluster of `CLUSTER_BROKERS` nodes, and what the tests do to its nodes."""

    runner: LocalKafkaCluster
    bootstrap: str

    def pid(self, node_id: int) -> int | None:
        (status,) = [n.status for n in self.runner.status() if n.node_id == node_id]
        return status.pid if status.running else None

    def kill(self, node_id: int) -> None:
        """SIGKILL node `node_id`'s JVM (a crash: no controlled shutdown), and wait until it is gone."""
        pid = self.pid(node_id)
        assert pid is not None, f"node {node_id} is not running"
        # Never another run's JVM: the pid must be a node of this cluster's folder.
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert str(self.runner.data_dir / f"node-{node_id}").encode() in cmdline, cmdline
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while self.pid(node_id) is not None and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self) -> str:
        """`start` again: brings back every node that is down."""
        return self.runner.start(timeout=120)


@pytest.fixture(scope="package")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    given = os.environ.get("PRIK_TEST_CLUSTER_DIR")
    if given:
        runner = LocalKafkaCluster(LocalKafkaConfig(data_dir=Path(given), heap_mb=384), CLUSTER_BROKERS)
        yield KafkaCluster(runner, runner.start(timeout=120))
        return
    config = LocalKafkaConfig(
        data_dir=tmp_path_factory.mktemp("cluster"),
        port=consecutive_free_ports(CLUSTER_BROKERS),
        heap_mb=384,
    )
    runner = LocalKafkaCluster(config, CLUSTER_BROKERS)
    try:
        yield KafkaCluster(runner, runner.start(timeout=120))
    finally:
        runner.stop()


class ClusterWorld(World):
    """The integration tier's world, on the cluster, with what provisioning reported."""

    report: ApplyReport


@pytest.fixture
async def cluster_world(kafka_cluster: KafkaCluster, topic_prefix: str, tmp_path: Path) -> ClusterWorld:
    tenants_file = tmp_path / "tenants.toml"
    tenants_file.write_text(TENANTS_TOML)
    settings = Settings(kafka=KafkaSettings(bootstrap=kafka_cluster.bootstrap), topic_prefix=topic_prefix)
    tenants = parse_tenants(TENANTS_TOML)
    report = await apply_topics(settings.kafka, settings.topics, tenants)
    await load_directory(
        settings.kafka,
        settings.topics,
        [DirectoryEntry(sor=CLINIC, lps="lps-xmo"), DirectoryEntry(sor=OTHER_CLINIC, lps="lps-other")],
    )
    world = ClusterWorld(settings, tenants, tenants_file, tmp_path)
    world.report = report
    return world
