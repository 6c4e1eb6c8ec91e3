"""A Kafka for one run: the configured one if it answers, else a local broker started for the run."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

from prik.settings import KafkaSettings

from .local_kafka import LocalKafka, LocalKafkaConfig, free_port
from .readiness import probe_metadata

__all__ = ["BorrowedKafka", "acquire_kafka"]


@dataclass(slots=True)
class BorrowedKafka:
    bootstrap: str
    # Set only when this run started the broker itself, and so must stop it.
    runner: LocalKafka | None = None
    # How to reach a broker that was already there (TLS and SASL included).
    configured: KafkaSettings | None = None

    @property
    def admin(self) -> KafkaSettings:
        """How the operator connects: as the super user `admin` over TLS when the broker is secure."""
        if self.runner is not None:
            return self.runner.client_settings(self.bootstrap)
        return self.configured or KafkaSettings(bootstrap=self.bootstrap)

    @property
    def secure(self) -> bool:
        return self.runner is not None and self.runner.secure

    def as_user(self, user: str, password_file: Path) -> KafkaSettings:
        """How one party connects to this broker: its own SCRAM user, or plain when not secure."""
        if not self.secure:
            return self.admin
        return self.admin.model_copy(
            update={"username": user, "password": None, "password_file": password_file}
        )

    @property
    def description(self) -> str:
        if self.runner is None:
            return f"{self.bootstrap} (existing)"
        return f"{self.bootstrap} ({'SASL_SSL, ' if self.secure else ''}started for this run)"

    async def release(self) -> None:
        """Stop the broker if this run started it, and drop its data (the logs stay)."""
        runner, self.runner = self.runner, None
        if runner is None:
            return
        await asyncio.to_thread(runner.stop)
        shutil.rmtree(runner.data_dir / "data", ignore_errors=True)


async def acquire_kafka(configured: KafkaSettings, data_dir: Path, *, secure: bool = False) -> BorrowedKafka:
    """Reuse the `configured` Kafka when it answers a metadata request (with its TLS and SASL
    settings); otherwise start one on a free port.

    `secure` always starts a broker of its own (SASL_SSL, SCRAM, ACLs): only then does
    the run hold the super user's password.
    """
    if not secure and await probe_metadata(configured.bootstrap, kafka=configured):
        return BorrowedKafka(configured.bootstrap, configured=configured)
    runner = LocalKafka(LocalKafkaConfig(data_dir=data_dir, port=free_port(), secure=secure))
    # start() blocks (JVM start-up, readiness polling) and runs its own event loop to probe.
    bootstrap = await asyncio.to_thread(runner.start)
    return BorrowedKafka(bootstrap, runner)
