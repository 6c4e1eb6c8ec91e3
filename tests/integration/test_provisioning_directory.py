"""The clinic directory on a real broker: load, read, tombstone, all-or-nothing, and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from contracts import Topics
from contracts.directory import DirectoryEntry
from deploy.directory import (
    delete_directory_entries,
    load_directory,
    parse_directory_csv,
    read_directory,
)
from deploy.topics import apply_topics
from prik.settings import KafkaSettings
from prik.tenants import load_tenants
from producers import read_records

pytestmark = pytest.mark.kafka

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "tenants.example.toml"
CSV = (
    "sor,lps,name,ydernummer\n"
    "123456789012345,lps-xmo,Lægerne i Byen,012345\n"
    "223456789012345,lps-novax,,\n"
    "323456789012345,lps-xmo,Klinik Nord,7\n"
)


@pytest.fixture
async def kafka(kafka_bootstrap: str, topic_prefix: str) -> KafkaSettings:
    settings = KafkaSettings(bootstrap=kafka_bootstrap)
    await apply_topics(settings, Topics(topic_prefix), load_tenants(EXAMPLE))
    return settings


def _prik(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prik", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


async def test_load_then_read_round_trip_and_tombstone(kafka: KafkaSettings, topic_prefix: str) -> None:
    topics = Topics(topic_prefix)
    entries = parse_directory_csv(CSV, load_tenants(EXAMPLE))
    assert await load_directory(kafka, topics, entries) == 3

    directory = await read_directory(kafka, topics)
    assert directory == {e.sor: e for e in entries}
    assert directory["123456789012345"].ydernummer == "012345"

    # A later value for the same SOR wins; a tombstone removes.
    moved = DirectoryEntry(sor="223456789012345", lps="lps-xmo", name="Moved", ydernummer=None)
    await load_directory(kafka, topics, [moved])
    await delete_directory_entries(kafka, topics, ["323456789012345"])
    directory = await read_directory(kafka, topics)
    assert set(directory) == {"123456789012345", "223456789012345"}
    assert directory["223456789012345"] == moved

    records = [r async for r in read_records(kafka, topics.directory)]
    assert records[-1].key == b"323456789012345"
    assert records[-1].value is None


async def test_read_directory_of_an_empty_topic(kafka: KafkaSettings, topic_prefix: str) -> None:
    assert await read_directory(kafka, Topics(topic_prefix)) == {}


def test_cli_load_show_and_bad_files(
    kafka: KafkaSettings, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PRIK_KAFKA__BOOTSTRAP": kafka_bootstrap,
        "PRIK_TOPIC_PREFIX": topic_prefix,
        "PRIK_TENANTS": str(EXAMPLE),
    }
    bad = tmp_path / "bad.csv"
    bad.write_text(CSV + "0101901234,lps-xmo\n123456789012345,lps-novax\n423456789012345,lps-ghost\n")
    refused = _prik(env, "directory", "load", str(bad))
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "line 5:" in refused.stderr
    assert "line 6: SOR 123456789012345 is already listed on line 2" in refused.stderr
    assert "line 7: lps lps-ghost is not in the tenants file" in refused.stderr
    assert "0101901234" not in refused.stderr
    empty = _prik(env, "directory", "show")
    assert empty.returncode == 0, empty.stderr
    assert "123456789012345" not in empty.stdout  # nothing of the bad file was loaded

    good = tmp_path / "clinics.csv"
    good.write_text(CSV)
    loaded = _prik(env, "directory", "load", str(good))
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == f"loaded 3 clinic(s) into {topic_prefix}.directory"

    shown = _prik(env, "directory", "show")
    assert shown.returncode == 0, shown.stderr
    for sor in ("123456789012345", "223456789012345", "323456789012345"):
        assert sor in shown.stdout
    assert "Lægerne i Byen" in shown.stdout
    assert "012345" in shown.stdout

    one = _prik(env, "directory", "show", "223456789012345")
    assert one.returncode == 0
    assert "lps-novax" in one.stdout
    assert "123456789012345" not in one.stdout

    missing = _prik(env, "directory", "show", "999999999999999")
    assert missing.returncode == 1
    assert missing.stderr == "prik: error: SOR 999999999999999 is not in the directory\n"

    cpr = _prik(env, "directory", "show", "0101901234")
    assert cpr.returncode == 2
    assert "0101901234" not in cpr.stderr
