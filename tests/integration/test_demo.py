"""`prik demo`, the main job, as a user runs it: a child process, judged by its exit code and table."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.kafka


def _demo_env(bootstrap: str) -> dict[str, str]:
    env = {**os.environ, "PRIK_KAFKA__BOOTSTRAP": bootstrap, "PYTHONUNBUFFERED": "1"}
    env.pop("PRIK_TOPIC_PREFIX", None)
    return env


def _row(stdout: str, name: str) -> dict[str, str]:
    """One row of the final table as {column: cell}."""
    lines = stdout.splitlines()
    header = next(line for line in lines if line.startswith("┃ type"))
    columns = [cell.strip() for cell in header.strip("┃").split("┃")]
    row = next(line for line in lines if line.startswith(f"│ {name} "))
    cells = [cell.strip() for cell in row.strip("│").split("│")]
    return dict(zip(columns, cells, strict=True))


def test_demo_runs_for_20_seconds_and_loses_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "prik", "demo", "--seconds", "20", "--run-dir", str(tmp_path / "runs")],
        cwd=tmp_path,
        env=_demo_env(kafka_bootstrap),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 0, output
    total = _row(result.stdout, "all")
    assert total["lost"] == "0", output
    assert total["dup"] == "0", output
    assert int(total["sent"]) > 500, output
    for outcome in ("delivered", "expired", "rejected"):
        assert int(total[outcome]) > 0, output
    assert _row(result.stdout, "task.status")["delivered"] != "0", output
    assert "(0 lost, 0 duplicates)" in result.stdout
    assert "Traceback" not in result.stderr
    # It ends with the run's `prik usage` table and the dashboard it served.
    assert "prik usage --since" in result.stdout
    assert "dashboard served during the run: http://127.0.0.1:" in result.stdout


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline:
            found.append(int(entry.name))
    return found


def test_sigint_stops_everything_including_the_kafka_it_started(tmp_path: Path) -> None:
    # Nothing answers on port 1, so the demo starts (and must stop) a broker of its own.
    runs = tmp_path / "runs"
    log = tmp_path / "demo.out"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "prik", "demo", "--seconds", "120", "--run-dir", str(runs)],
            cwd=tmp_path,
            env=_demo_env("127.0.0.1:1"),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 180
        while b"[sending" not in log.read_bytes():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        assert _processes_mentioning(str(runs / "demo-")), "the demo's own Kafka should be running"
        process.send_signal(signal.SIGINT)
        assert process.wait(90) == 130, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert _processes_mentioning(str(runs / "demo-")) == [], "a process of the demo outlived it"
    text = log.read_text()
    assert "interrupted" in text
    assert "Traceback" not in text


def test_the_secure_demo_runs_every_party_on_its_own_credentials(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    result = subprocess.run(
        [sys.executable, "-m", "prik", "demo", "--secure", "--seconds", "10", "--run-dir", str(runs)],
        cwd=tmp_path,
        # A plaintext broker answering here must not be used: --secure starts one of its own.
        env=_demo_env("127.0.0.1:1"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 0, output
    assert "(SASL_SSL, started for this run)" in result.stdout
    assert _row(result.stdout, "all")["lost"] == "0", output
    (run,) = runs.iterdir()
    made = {path.name: path for path in (run / "credentials").iterdir()}
    parties = {"router", "minlaege-video", "kommune-0101", "lps-xmo", "lps-novax", "lps-clinea"}
    assert parties <= {name.removesuffix(".password") for name in made}
    for path in made.values():
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
        password = path.read_text().strip()
        assert password not in result.stdout + result.stderr
        assert password not in (run / "demo.log").read_text()
    assert _processes_mentioning(str(runs)) == [], "the demo's secure Kafka outlived it"
