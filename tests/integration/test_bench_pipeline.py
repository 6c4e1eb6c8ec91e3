"""`prik bench pipeline --json` as a user runs it: every documented key, and nothing lost.

No timing is asserted: timing belongs to the benchmark, not to the tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.kafka

_LATENCY = {"p50", "p99", "p999", "max", "mean"}
_STAGE = {
    "sent",
    "delivered",
    "duplicates",
    "backlog",
    "publish_per_second",
    "end_to_end_per_second",
    "latency_ms",
    "peak_rss_mb",
}
_PROCESSES = {
    "raw": {"publisher", "receiver"},
    "two_hop": {"publisher", "passthrough", "receiver"},
    "pipeline": {"publisher", "router", "receiver"},
}
_COMPARED = {"p50", "p99", "p999", "max", "end_to_end_per_second", "publish_per_second"}


def test_bench_pipeline_json_has_every_key_and_every_message_arrives(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = {**os.environ, "PRIK_KAFKA__BOOTSTRAP": kafka_bootstrap}
    env.pop("PRIK_TOPIC_PREFIX", None)
    result = subprocess.run(
        [sys.executable, "-m", "prik", "bench", "pipeline", "--seconds", "5", "--rate", "200", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)

    assert set(report) == {
        "mode",
        "rate",
        "seconds",
        "messages",
        "webhook",
        "kafka",
        "stages",
        "ratios",
        "targets",
        "peak_rss_mb",
    }
    assert (report["mode"], report["rate"], report["seconds"], report["messages"]) == ("rate", 200, 5, 1000)
    assert report["webhook"] is False
    assert set(report["stages"]) == set(_PROCESSES)
    for name, stage in report["stages"].items():
        assert set(stage) == _STAGE, name
        assert set(stage["latency_ms"]) == _LATENCY, name
        assert all(isinstance(v, float) and v > 0 for v in stage["latency_ms"].values()), name
        assert set(stage["peak_rss_mb"]) == _PROCESSES[name], name
        assert all(isinstance(v, float) and v > 0 for v in stage["peak_rss_mb"].values()), name
        # Every message arrived, once: sent == delivered, nothing left behind.
        assert stage["sent"] == 1000, name
        assert stage["delivered"] == stage["sent"], name
        assert stage["backlog"] == 0, name
        assert stage["duplicates"] == 0, name
    assert set(report["ratios"]) == {"pipeline_vs_two_hop", "pipeline_vs_raw", "two_hop_vs_raw"}
    for name, ratios in report["ratios"].items():
        assert set(ratios) == _COMPARED, name
        assert all(isinstance(v, float) and v > 0 for v in ratios.values()), name
    assert set(report["targets"]) == {"kept_up", "p99_within_2x_two_hop", "saturation_at_least_quarter_raw"}
    assert report["targets"]["kept_up"] is True
    assert report["targets"]["saturation_at_least_quarter_raw"] is None
    assert isinstance(report["peak_rss_mb"], float)
