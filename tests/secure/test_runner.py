"""`prik kafka start|status|stop` in secure mode: what it makes, what it keeps across a restart."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from contracts import ConfigError
from deploy import LocalKafka, LocalKafkaConfig
from prik.kafka import login_works

from .conftest import ALLOWED, SecureWorld, started_producer, try_produce

pytestmark = [pytest.mark.kafka, pytest.mark.secure]


def prik(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "prik", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, env=os.environ, check=False)


def test_secret_files_are_the_owners_alone(world: SecureWorld) -> None:
    data = world.kafka.runner.data_dir
    for path in (
        data / "admin.password",
        data / "broker.password",
        data / "server.properties",
        data / "tls" / "ca.key",
        data / "tls" / "broker-keystore.pem",
    ):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((data / "tls").stat().st_mode) == 0o700
    # Clients are told to trust this one, so anyone may read it.
    assert (data / "tls" / "ca.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
    # The StorageTool arguments (with the passwords) are gone once the storage is formatted.
    assert not (data / "format.args").exists()


def test_status_says_secure(world: SecureWorld) -> None:
    status = prik("kafka", "status", "--data-dir", str(world.kafka.runner.data_dir))
    assert status.returncode == 0, status.stderr
    assert world.kafka.bootstrap in status.stdout
    assert "secure: SASL_SSL with SCRAM-SHA-512" in status.stdout
    assert str(world.kafka.ca_file) in status.stdout


async def test_a_restart_keeps_tls_passwords_users_and_acls(world: SecureWorld) -> None:
    """Restarted from the command line without --secure: a secure data folder stays secure."""
    data = world.kafka.runner.data_dir
    ca_before = world.kafka.ca_file.read_bytes()
    keystore_before = (data / "tls" / "broker-keystore.pem").read_bytes()
    admin_before = world.kafka.admin_password_file.read_text()
    port = world.kafka.bootstrap.rpartition(":")[2]
    controller_port = world.kafka.controller_port

    stopped = prik("kafka", "stop", "--data-dir", str(data))
    assert stopped.stdout.startswith("stopped"), stopped.stderr
    started = prik("kafka", "start", "--data-dir", str(data), "--port", port)
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == world.kafka.bootstrap
    assert "secure: SASL_SSL with SCRAM-SHA-512" in started.stderr
    assert admin_before.strip() not in started.stderr + started.stdout

    assert world.kafka.controller_port == controller_port
    assert world.kafka.ca_file.read_bytes() == ca_before
    assert (data / "tls" / "broker-keystore.pem").read_bytes() == keystore_before
    assert world.kafka.admin_password_file.read_text() == admin_before
    # The users and ACLs live in the metadata log: a tenant carries on as before.
    video = world.principal("video")
    assert await login_works(video)
    async with started_producer(video) as producer:
        assert (
            await try_produce(producer, world.topics.ingress(world.ids["video"]), b"after restart") == ALLOWED
        )


def test_a_plaintext_data_folder_is_not_made_secure(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "meta.properties").write_text("node.id=1\n")
    runner = LocalKafka(LocalKafkaConfig(data_dir=tmp_path, port=1, secure=True))
    with pytest.raises(ConfigError, match="made without --secure: give --secure a new --data-dir"):
        runner.start()
    assert not (tmp_path / "admin.password").exists()
