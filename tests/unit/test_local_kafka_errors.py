"""`prik kafka start` explains a missing Java or Maven in one line, exit 2."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from deploy import free_port


def _start(tmp_path: Path, path: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env |= {"PATH": path, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "prik",
            "kafka",
            "start",
            "--data-dir",
            str(tmp_path / "data"),
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_missing_java_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    result = _start(tmp_path, str(tmp_path / "bin"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "prik: error: java not found: install a Java 17+ runtime (apt-get install openjdk-17-jre-headless)"
    )


def test_missing_maven_is_one_line(tmp_path: Path) -> None:
    java = shutil.which("java")
    assert java is not None, "the machine has Java"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "java").symlink_to(java)
    result = _start(tmp_path, str(bin_dir))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "prik: error: mvn not found: Maven is needed once to fetch the Kafka jars (apt-get install maven)"
    )
