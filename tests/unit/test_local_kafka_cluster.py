"""The local cluster's configuration and refusals, and the replication provisioning applies: no JVM."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from contracts import ConfigError, Topics, parse_tenants
from deploy.local_kafka import ClusterLayout, LocalKafkaCluster, LocalKafkaConfig
from deploy.topics import _replication, min_insync_replicas, topic_specs

TENANTS = (Path(__file__).parent.parent / "data" / "tenants.toml").read_text()


def _properties(path: Path) -> dict[str, str]:
    lines = (line.partition("=") for line in path.read_text().splitlines() if line)
    return {key: value for key, _, value in lines}


def test_layout_names_every_node_and_voter() -> None:
    layout = ClusterLayout(3, 20100, (41001, 41002, 41003), "id")
    assert layout.bootstrap == "127.0.0.1:20100,127.0.0.1:20101,127.0.0.1:20102"
    assert layout.voters == "1@127.0.0.1:41001,2@127.0.0.1:41002,3@127.0.0.1:41003"


def test_each_node_is_a_voter_of_a_static_quorum_with_internal_topics_replicated(tmp_path: Path) -> None:
    cluster = LocalKafkaCluster(LocalKafkaConfig(data_dir=tmp_path, port=20100), 3)
    nodes = cluster.nodes()
    layout = LocalKafkaCluster.layout_of(tmp_path)
    assert layout is not None
    assert len(set(layout.controller_ports)) == 3
    assert not set(layout.controller_ports) & {20100, 20101, 20102}
    for node in nodes:
        node.data_dir.mkdir(parents=True)
        port = 20100 + node.node_id - 1
        props = _properties(node._write_properties(port, layout.controller_ports[node.node_id - 1]))
        assert props["node.id"] == str(node.node_id)
        assert props["controller.quorum.voters"] == layout.voters
        assert "controller.quorum.bootstrap.servers" not in props
        assert props["listeners"] == (
            f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{layout.controller_ports[node.node_id - 1]}"
        )
        assert props["log.dirs"] == str(tmp_path / f"node-{node.node_id}" / "data")
        for key in (
            "offsets.topic.replication.factor",
            "transaction.state.log.replication.factor",
            "share.coordinator.state.topic.replication.factor",
            "default.replication.factor",
        ):
            assert props[key] == "3", key
        for key in (
            "transaction.state.log.min.isr",
            "share.coordinator.state.topic.min.isr",
            "min.insync.replicas",
        ):
            assert props[key] == "2", key
        # Static voters are formatted without --standalone, all with the cluster's one id.
        assert node._format_options() == []
        assert node._storage_cluster_id() == layout.cluster_id
    # One set of secrets for every node.
    assert {n.admin_password_file for n in nodes} == {tmp_path / "admin.password"}
    assert {n.ca_file for n in nodes} == {tmp_path / "tls" / "ca.pem"}


def test_a_cluster_refuses_a_single_node_folder_and_another_size(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="2 or more brokers"):
        LocalKafkaCluster(LocalKafkaConfig(data_dir=tmp_path), 1)
    single = tmp_path / "single"
    (single / "data").mkdir(parents=True)
    (single / "data" / "meta.properties").write_text("node.id=1\n")
    with pytest.raises(ConfigError, match="holds a single-node broker"):
        LocalKafkaCluster(LocalKafkaConfig(data_dir=single), 3).nodes()
    three = tmp_path / "three"
    LocalKafkaCluster(LocalKafkaConfig(data_dir=three), 3).nodes()
    with pytest.raises(ConfigError, match="holds a cluster of 3 brokers, not 5"):
        LocalKafkaCluster(LocalKafkaConfig(data_dir=three), 5).start()


def test_cli_says_in_one_line_that_a_cluster_folder_is_not_one_node(tmp_path: Path) -> None:
    LocalKafkaCluster(LocalKafkaConfig(data_dir=tmp_path), 3).nodes()
    result = subprocess.run(
        [sys.executable, "-m", "prik", "kafka", "start", "--brokers", "1", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"prik: error: {tmp_path} holds a cluster of 3 brokers, not 1"
    moved = subprocess.run(
        [sys.executable, "-m", "prik", "kafka", "start", "--port", "9100", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert moved.returncode == 2
    assert moved.stderr.strip() == f"prik: error: {tmp_path} holds a cluster on ports 9092-9094: --port 9092"


@pytest.mark.parametrize(("replication", "min_isr"), [(1, "1"), (2, "1"), (3, "2")])
def test_topics_keep_writing_with_one_replica_down(replication: int, min_isr: str) -> None:
    specs = topic_specs(Topics("p"), parse_tenants(TENANTS), replication)
    assert {s.configs["min.insync.replicas"] for s in specs} == {min_isr}
    assert min_insync_replicas(replication) == int(min_isr)


class _Admin:
    def __init__(self, brokers: int) -> None:
        self._brokers = brokers

    async def describe_cluster(self) -> dict[str, Any]:
        return {"brokers": [{"node_id": i} for i in range(self._brokers)]}


@pytest.mark.parametrize(("brokers", "replication"), [(1, 1), (2, 2), (3, 3), (5, 3)])
async def test_replication_is_at_most_three(brokers: int, replication: int) -> None:
    assert await _replication(_Admin(brokers)) == replication  # a stand-in admin (aiokafka is untyped)


def test_stop_and_status_of_an_empty_folder_make_nothing(tmp_path: Path) -> None:
    cluster = LocalKafkaCluster(LocalKafkaConfig(data_dir=tmp_path), 3)
    assert cluster.status() == []
    assert cluster.stop() == 0
    assert list(tmp_path.iterdir()) == []
