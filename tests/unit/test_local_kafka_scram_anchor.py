"""The SCRAM anchor user: what keeps Kafka 4.1.2 from losing every SCRAM user on a restart.

The bug and its real-broker test: tests/secure/test_runner.py
(test_a_restart_after_a_user_was_removed_keeps_every_login).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from deploy import LocalKafka, LocalKafkaConfig
from deploy.credentials import write_private
from deploy.local_kafka import BROKER_USER, SCRAM_ANCHOR_USER, SUPER_USER


def java_bucket(name: str, buckets: int) -> int:
    """The bucket of `name` in a java.util.HashMap of `buckets` (String.hashCode, then HashMap.hash)."""
    h = 0
    for char in name:
        h = (31 * h + ord(char)) & 0xFFFFFFFF
    return (h ^ (h >> 16)) & (buckets - 1)


def test_java_bucket_matches_known_java_hashes() -> None:
    # "f5a5a608".hashCode() == 0 and "Aa".hashCode() == "BB".hashCode() == 2112 in Java.
    assert java_bucket("f5a5a608", 1 << 16) == 0
    assert java_bucket("Aa", 64) == java_bucket("BB", 64) == 2112 % 64


@pytest.mark.parametrize("buckets", [16 << i for i in range(13)])
def test_the_anchor_is_in_the_first_bucket_of_any_hashmap(buckets: int) -> None:
    assert java_bucket(SCRAM_ANCHOR_USER, buckets) == 0


def test_formatting_secure_storage_writes_the_anchor_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = LocalKafka(LocalKafkaConfig(data_dir=tmp_path, port=1, secure=True))
    for path, password in (
        (runner.admin_password_file, "admin-pw"),
        (tmp_path / "broker.password", "broker-pw"),
    ):
        write_private(path, password + "\n")
    seen: list[str] = []

    def run(argv: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        seen.extend(Path(argv[-1].removeprefix("@")).read_text().splitlines())
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(subprocess, "run", run)
    runner._format("java", tmp_path, tmp_path / "server.properties")

    users = [a.split("name=")[1].split(",")[0] for a in seen if a.startswith("SCRAM-SHA-512=")]
    assert users == [SCRAM_ANCHOR_USER, SUPER_USER, BROKER_USER]
    anchor = next(a for a in seen if f"name={SCRAM_ANCHOR_USER}," in a)
    assert "admin-pw" not in anchor
    assert "broker-pw" not in anchor
