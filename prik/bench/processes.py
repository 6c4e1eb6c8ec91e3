"""Child processes of `prik bench pipeline`, and what they last said (JSON lines on stdout)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

from contracts import PrikError, codec

__all__ = ["Child", "vm_hwm_mb"]

_TAIL_BYTES = 1500


def vm_hwm_mb(pid: int) -> float | None:
    """The peak resident set size of a running process (Linux: VmHWM in /proc/<pid>/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


class Child:
    """One process; `module` runs as `python -m module *args`, stderr (and stdout if `quiet`) to `log`."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], log: Path, *, quiet: bool = False
    ) -> None:
        self.name = name
        self._args = [sys.executable, "-m", *args]
        self._env = env
        self.log = log
        self._quiet = quiet
        self.process: asyncio.subprocess.Process | None = None
        self.progress: dict[str, Any] = {}
        self.final: dict[str, Any] | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self._args,
                stdin=asyncio.subprocess.PIPE,
                stdout=log if self._quiet else asyncio.subprocess.PIPE,
                stderr=log,
                env=self._env,
            )
        if not self._quiet:
            self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process is not None  # noqa: S101  started
        assert self.process.stdout is not None  # noqa: S101  a pipe unless quiet
        async for line in self.process.stdout:
            event = codec.loads(line)
            if event.get("event") == "final":
                self.final = event
            else:
                self.progress = event

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def check(self) -> None:
        """Raise, with the end of its log, if the process has exited before it was told to."""
        if self.process is not None and self.process.returncode is not None and self.final is None:
            msg = f"bench {self.name} process exited with {self.process.returncode}: {self.tail()}"
            raise PrikError(msg)

    def tail(self) -> str:
        try:
            text = self.log.read_bytes()[-_TAIL_BYTES:].decode(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(line for line in text.splitlines() if line.strip()) or "(empty log)"

    def say(self, line: str) -> None:
        if self.process is not None and self.process.stdin is not None and self.alive:
            self.process.stdin.write(line.encode() + b"\n")

    def peak_rss_mb(self) -> float | None:
        return vm_hwm_mb(self.process.pid) if self.alive and self.process is not None else None

    async def finish(self, within: float = 60.0) -> dict[str, Any]:
        """Close its stdin (the stop signal), wait for it, and return its `final` line."""
        assert self.process is not None  # noqa: S101  started
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()
        await self.wait(within)
        if self.final is None:
            msg = f"bench {self.name} process gave no result: {self.tail()}"
            raise PrikError(msg)
        return self.final

    async def terminate(self, within: float = 60.0) -> int | None:
        """SIGTERM (graceful stop), then wait; SIGKILL after `within`."""
        if self.alive and self.process is not None:
            self.process.send_signal(signal.SIGTERM)
        await self.wait(within)
        return self.process.returncode if self.process is not None else None

    async def wait(self, within: float) -> None:
        assert self.process is not None  # noqa: S101  started
        try:
            await asyncio.wait_for(self.process.wait(), within)
        except TimeoutError:
            self.kill()
            await self.process.wait()
        if self._reader is not None:
            await self._reader

    def kill(self) -> None:
        if self.alive and self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
