"""`prik bench publisher` and `prik bench consumer` on the real broker: JSON shape, every message counted."""

from __future__ import annotations

from typing import Any

import pytest

from contracts import codec

from .conftest import World

pytestmark = pytest.mark.kafka

_STAGE_KEYS = {"per_second", "median_per_second", "rounds_per_second", "cpu_us_per_message"}
_REPORT_KEYS = {
    "stage",
    "bootstrap",
    "messages",
    "rounds",
    "baseline",
    "prik",
    "ratio",
    "target",
    "met",
    "peak_rss_mb",
}


def _bench(world: World, stage: str, messages: int, rounds: int) -> dict[str, Any]:
    done = world.prik(
        "bench", stage, "--messages", str(messages), "--rounds", str(rounds), "--json", timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    report: dict[str, Any] = codec.loads(done.stdout.encode())
    assert report.keys() >= _REPORT_KEYS
    assert report["stage"] == stage
    assert report["bootstrap"] == world.kafka.bootstrap
    assert (report["messages"], report["rounds"]) == (messages, rounds)
    for side in ("baseline", "prik"):
        assert report[side].keys() >= _STAGE_KEYS
        assert len(report[side]["rounds_per_second"]) == rounds
        assert report[side]["per_second"] == max(report[side]["rounds_per_second"]) > 0
    assert report["ratio"] == pytest.approx(
        report["prik"]["per_second"] / report["baseline"]["per_second"], rel=0.01, abs=0.001
    )
    assert report["met"] == (report["ratio"] >= report["target"])
    return report


def test_bench_publisher_counts_every_acknowledgement(world: World) -> None:
    report = _bench(world, "publisher", 300, 2)
    assert report["baseline"]["acknowledged"] == 600
    assert report["prik"]["acknowledged"] == 600
    # Both stages' rounds, and nothing else, reached the topic.
    assert report["on_topic"] == 1200


def test_bench_consumer_delivers_and_receipts_every_record(world: World) -> None:
    report = _bench(world, "consumer", 300, 1)
    baseline, reference, prik = report["baseline"], report["reference"], report["prik"]
    assert baseline["consumed"] == baseline["committed"] == 300
    assert reference["consumed"] == reference["written"] == reference["committed"] == 300
    assert reference.keys() >= _STAGE_KEYS
    assert report["ratio_to_reference"] == pytest.approx(
        prik["per_second"] / reference["per_second"], rel=0.01, abs=0.001
    )
    assert prik["delivered"] == prik["receipts"] == prik["receipts_on_topic"] == prik["committed"] == 300
    assert prik["duplicates"] == 0
    assert prik["outcomes"] == {"delivered": 300, "expired": 0, "rejected": 0, "dead-lettered": 0}
