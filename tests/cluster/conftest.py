"""A provisioned prik world on the session's 3-node cluster (topics RF 3, min ISR 2)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from contracts import DirectoryEntry, parse_tenants
from deploy.directory import load_directory
from deploy.topics import ApplyReport, apply_topics
from prik.settings import KafkaSettings, Settings

if TYPE_CHECKING:
    # mypy sees tests/ as the namespace package `tests`; pytest puts tests/ itself on
    # sys.path (no __init__.py there) and names the integration tier `integration`.
    # Importing it under its pytest name shares the one module, and loads no conftest twice.
    from tests.conftest import KafkaCluster
    from tests.integration.conftest import CLINIC, OTHER_CLINIC, TENANTS_TOML, RouterProcess, World
else:
    from integration.conftest import CLINIC, OTHER_CLINIC, TENANTS_TOML, RouterProcess, World

__all__ = ["CLINIC", "OTHER_CLINIC", "ClusterWorld", "RouterProcess", "World"]


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
