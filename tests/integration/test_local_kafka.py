"""`prik kafka start|status|stop` against the real broker it runs."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import free_port, probe_metadata

pytestmark = pytest.mark.kafka


def _prik(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prik", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


async def test_start_status_stop_round_trip(tmp_path: Path) -> None:
    port = free_port()
    data = str(tmp_path / "kafka")
    try:
        started = _prik("kafka", "start", "--data-dir", data, "--port", str(port))
        assert started.returncode == 0, started.stderr
        assert started.stdout.strip() == f"127.0.0.1:{port}"
        assert await probe_metadata(f"127.0.0.1:{port}")

        again = _prik("kafka", "start", "--data-dir", data, "--port", str(port))
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == f"127.0.0.1:{port}"
        assert "already running" in again.stderr

        status = _prik("kafka", "status", "--data-dir", data)
        assert status.returncode == 0
        assert f"127.0.0.1:{port}" in status.stdout
        assert (tmp_path / "kafka" / "logs" / "server.log").stat().st_size > 0
    finally:
        stopped = _prik("kafka", "stop", "--data-dir", data)
    assert stopped.returncode == 0
    assert stopped.stdout.startswith("stopped")
    assert not await probe_metadata(f"127.0.0.1:{port}", within=1)
    assert _prik("kafka", "status", "--data-dir", data).returncode == 1
    # Stop removes nothing: the formatted storage is still there.
    assert (tmp_path / "kafka" / "data" / "meta.properties").exists()
    assert _prik("kafka", "stop", "--data-dir", data).stdout.strip() == "not running"


def test_port_taken_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = _prik("kafka", "start", "--data-dir", str(tmp_path), "--port", str(port))
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"prik: error: port {port} is taken by another process: choose another with --port"
    )
