"""`prik kafka start|status|stop` in secure mode: what it makes, what it keeps across a restart."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

# confluent_kafka.admin re-exports these without `as`, which mypy --strict does not count as exported.
from confluent_kafka.admin._scram import ScramMechanism, UserScramCredentialDeletion
from pydantic import SecretStr

from contracts import ConfigError
from deploy import LocalKafka, LocalKafkaConfig, free_port
from deploy.acls import _result, _upsert
from deploy.credentials import new_password
from prik.kafka import confluent_admin, login_works
from prik.runner import run_to_end

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


# Java's String.hashCode spreads this name to bucket 0 of any HashMap (as it does the anchor's):
# a restart's replay of the metadata log meets its removal first among the SCRAM changes.
REMOVED_FIRST = "gone-tenant-a8mg"


def test_a_restart_after_a_user_was_removed_keeps_every_login(tmp_path: Path) -> None:
    """Kafka 4.1.2 lost every SCRAM user (admin's too) when that removal came first; the anchor comes first.

    Without the anchor user made at format time the second start fails: the broker
    answers TLS and refuses every login. A broker of its own: the session's broker
    holds other users, which decide whether a removal comes first.
    """
    runner = LocalKafka(LocalKafkaConfig(data_dir=tmp_path / "kafka", port=free_port(), secure=True))
    bootstrap = runner.start(timeout=120)
    try:
        admin = runner.client_settings(bootstrap)
        kept = admin.model_copy(
            update={"username": "kept-tenant", "password": SecretStr(new_password()), "password_file": None}
        )
        confluent = confluent_admin(admin)
        _upsert(confluent, {"kept-tenant": kept.secret() or "", REMOVED_FIRST: new_password()}, 30)
        removal = UserScramCredentialDeletion(REMOVED_FIRST, ScramMechanism.SCRAM_SHA_512)
        for future in confluent.alter_user_scram_credentials([removal], request_timeout=30).values():
            _result(future, f"removing user {REMOVED_FIRST}", 30)
        assert run_to_end(login_works(kept))

        assert runner.stop()
        assert runner.start(timeout=60) == bootstrap
        assert run_to_end(login_works(admin))
        assert run_to_end(login_works(kept))
    finally:
        runner.stop()
