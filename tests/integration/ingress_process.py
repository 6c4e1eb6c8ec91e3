"""`prik ingress run` as a child process, as an operator runs it, and the password files it reads."""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import World

__all__ = ["IngressProcess", "write_passwords"]


def write_passwords(folder: Path, tenants: list[str]) -> dict[str, str]:
    """One 0600 `<id>.password` file per tenant, as `prik topics apply --credentials` makes them."""
    folder.mkdir(mode=0o700, exist_ok=True)
    passwords = {}
    for tenant in tenants:
        passwords[tenant] = secrets.token_urlsafe(24)
        path = folder / f"{tenant}.password"
        path.write_text(passwords[tenant] + "\n")
        path.chmod(0o600)
    return passwords


class IngressProcess:
    def __init__(self, world: World, credentials: Path, env: dict[str, str] | None = None) -> None:
        self.stdout = world.root / "ingress.out"
        self.stderr = world.root / "ingress.err"
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "prik",
                    "ingress",
                    "run",
                    "--port",
                    "0",
                    "--credentials",
                    str(credentials),
                ],
                env={**world.env(), **(env or {})},
                stdout=out,
                stderr=err,
            )
        self.url = self._wait_started()

    def _wait_started(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            for line in self.stdout.read_text().splitlines():
                if line.startswith("ingress at "):
                    return line.split()[2].removesuffix("/v1/messages")
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the ingress did not start: {self.stderr.read_text()[-2000:]}")
            time.sleep(0.1)

    def terminate(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
