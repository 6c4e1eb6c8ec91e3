"""A provisioned prik world on the real broker: tenants, topics, directory, a router process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from contracts import DirectoryEntry, Message, Tenants, Topics, parse, parse_tenants
from deploy.directory import load_directory
from deploy.topics import apply_topics
from prik.settings import KafkaSettings, Settings
from producers.reading import read_records

TENANTS_TOML = (Path(__file__).parent.parent / "data" / "tenants.toml").read_text()
CLINIC = "123456789012"
OTHER_CLINIC = "223456789012"


@dataclass
class World:
    settings: Settings
    tenants: Tenants
    tenants_file: Path
    root: Path

    @property
    def topics(self) -> Topics:
        return self.settings.topics

    @property
    def kafka(self) -> KafkaSettings:
        return self.settings.kafka

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PRIK_KAFKA__BOOTSTRAP": self.kafka.bootstrap,
            "PRIK_TOPIC_PREFIX": self.settings.topic_prefix,
            "PRIK_TENANTS": str(self.tenants_file),
        }

    def prik(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "prik", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(),
            check=False,
        )

    async def read(self, topic: str) -> list[tuple[bytes | None, Message | None, dict[str, bytes]]]:
        out: list[tuple[bytes | None, Message | None, dict[str, bytes]]] = []
        async for record in read_records(self.kafka, topic):
            headers = dict(record.headers)
            try:
                message: Message | None = parse(record.value or b"", record.headers)
            except ValueError:
                message = None
            out.append((record.key, message, headers))
        return out

    async def wait_for(self, topic: str, count: int, timeout: float = 60) -> list[Message | None]:
        """The messages on `topic` once there are at least `count` (read_committed)."""
        deadline = time.monotonic() + timeout
        while True:
            got = [m for _, m, _ in await self.read(topic)]
            if len(got) >= count or time.monotonic() > deadline:
                return got
            await asyncio.sleep(0.3)


@pytest.fixture
async def world(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> World:
    tenants_file = tmp_path / "tenants.toml"
    tenants_file.write_text(TENANTS_TOML)
    settings = Settings(kafka=KafkaSettings(bootstrap=kafka_bootstrap), topic_prefix=topic_prefix)
    tenants = parse_tenants(TENANTS_TOML)
    await apply_topics(settings.kafka, settings.topics, tenants)
    await load_directory(
        settings.kafka,
        settings.topics,
        [DirectoryEntry(sor=CLINIC, lps="lps-xmo"), DirectoryEntry(sor=OTHER_CLINIC, lps="lps-other")],
    )
    return World(settings, tenants, tenants_file, tmp_path)


class RouterProcess:
    """`prik broker run` as a child process, as an operator would run it."""

    def __init__(self, world: World, instance: str = "test", env: dict[str, str] | None = None) -> None:
        self._world = world
        self._instance = instance
        self._env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.log = world.root / f"router-{instance}.log"
        self._log_from = 0

    def output(self) -> bytes:
        """What this run wrote to the log (a restart with the same instance appends)."""
        return self.log.read_bytes()[self._log_from :] if self.log.exists() else b""

    def start(self) -> None:
        self._log_from = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "prik", "broker", "run", "--instance", self._instance],
                env={**self._world.env(), **self._env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_started(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while b"router.ownership_taken" not in self.output():
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"router exited: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"router did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


@pytest.fixture
def routers(world: World) -> Iterator[Callable[..., RouterProcess]]:
    """Start router processes; whatever a test leaves running is killed after it."""
    started: list[RouterProcess] = []

    def start(instance: str = "test", env: dict[str, str] | None = None) -> RouterProcess:
        process = RouterProcess(world, instance, env)
        started.append(process)
        process.start()
        process.wait_started()
        return process

    yield start
    for process in started:
        if process.process is not None and process.process.poll() is None:
            process.kill()


@pytest.fixture
def router(routers: Callable[..., RouterProcess]) -> RouterProcess:
    return routers("test")
