"""The test harness: one real Kafka broker per session, unique topics per test.

Where the broker comes from, in order: `PRIK_TEST_KAFKA=host:port`; else
testcontainers' Kafka when a Docker engine answers; else the local runner
(Maven Central jars, a JVM on a free loopback port), started once and stopped
after the session.

The secure tier (`tests/secure/`) has a broker of its own, `secure_kafka`:
`prik kafka start --secure` on a free port, once per session. While working on
it, `PRIK_TEST_SECURE_KAFKA_DIR=<data dir>` reuses a secure broker already
running from that folder (and leaves it running).

The cluster tier (`tests/cluster/`) shares one local 3-node cluster of its
own, `kafka_cluster` in `tests/cluster/conftest.py`.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy import LocalKafka, LocalKafkaConfig, free_port, wait_until_ready
from prik.settings import KafkaSettings


def _docker_answers() -> bool:
    """Whether a Docker engine answers its ping (a raw request: no client left open)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = host.removeprefix("unix://")
        elif host.startswith("tcp://"):
            name, _, port = host.removeprefix("tcp://").partition(":")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (name, int(port or 2375))
        else:
            return False
        with sock:
            sock.settimeout(2)
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in sock.recv(1024)
    except OSError:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("PRIK_TEST_KAFKA")
    if given:
        wait_until_ready(given, 60)
        yield given
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer  # noqa: PLC0415 - needs Docker

        with KafkaContainer("apache/kafka:4.1.2").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    runner = LocalKafka(LocalKafkaConfig(data_dir=tmp_path_factory.mktemp("kafka"), port=free_port()))
    bootstrap = runner.start(timeout=120)
    try:
        yield bootstrap
    finally:
        runner.stop()


@dataclass(frozen=True)
class SecureKafka:
    """A running `prik kafka start --secure` broker, and how to reach it."""

    runner: LocalKafka
    bootstrap: str
    # One folder of password files for the whole session: SCRAM users are
    # cluster-wide, so every test world must agree on each user's password.
    credentials: Path

    @property
    def ca_file(self) -> Path:
        return self.runner.ca_file

    @property
    def controller_port(self) -> int:
        port = self.runner.status().controller_port
        assert port is not None, "the secure broker is not running"
        return port

    @property
    def admin_password_file(self) -> Path:
        return self.runner.admin_password_file

    def admin(self) -> KafkaSettings:
        return self.runner.client_settings(self.bootstrap)

    def as_user(self, user: str) -> KafkaSettings:
        """A client of `user`, its password read from the session's credentials folder."""
        return KafkaSettings(
            bootstrap=self.bootstrap,
            security_protocol="SASL_SSL",
            username=user,
            password_file=self.credentials / f"{user}.password",
            ca_file=self.ca_file,
        )


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    given = os.environ.get("PRIK_TEST_SECURE_KAFKA_DIR")
    credentials = tmp_path_factory.mktemp("credentials")
    if given:
        runner = LocalKafka(LocalKafkaConfig(data_dir=Path(given), secure=True))
        status = runner.status()
        if not status.running or status.bootstrap is None:
            pytest.fail(f"PRIK_TEST_SECURE_KAFKA_DIR={given}: no secure broker runs from there")
        yield SecureKafka(runner, status.bootstrap, credentials)
        return
    runner = LocalKafka(
        LocalKafkaConfig(data_dir=tmp_path_factory.mktemp("secure-kafka"), port=free_port(), secure=True)
    )
    bootstrap = runner.start(timeout=120)
    try:
        yield SecureKafka(runner, bootstrap, credentials)
    finally:
        runner.stop()


@pytest.fixture
def unique() -> str:
    """A short suffix that makes this test's topics and groups its own."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest, unique: str) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    return f"t-{name}-{unique}"


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
