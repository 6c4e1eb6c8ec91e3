"""A user's terminal shows prik's words only: no library chatter, nothing left unclosed."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import free_port
from prik.logs import configure_logging

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "tenants.example.toml"


def test_send_with_kafka_down_prints_one_prik_line_and_nothing_else() -> None:
    env = {
        **os.environ,
        "PRIK_KAFKA__BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "PRIK_TENANTS": str(EXAMPLE),
    }
    done = subprocess.run(
        [
            *(sys.executable, "-m", "prik", "send", "video-queue", "--as", "minlaege-video"),
            *("--clinic", "123456789012", "--event", "joined", "--queue-entry", "q-1"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("prik: error: connecting to Kafka at 127.0.0.1:")
    assert "Unclosed" not in done.stderr


@pytest.mark.parametrize(("level", "shown"), [("info", False), ("debug", True)])
def test_library_warnings_become_debug_lines(
    level: str, shown: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(level, json=True)
    logging.getLogger("aiokafka.producer.sender").warning("Got error produce response, retrying")
    logging.getLogger("aiokafka").critical("the sky fell")
    err = capsys.readouterr().err
    assert ("retrying" in err) is shown
    assert "the sky fell" in err  # what a library calls critical is never hidden
