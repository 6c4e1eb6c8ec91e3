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


def test_bench_routes_every_record_and_reports_the_codec_with_its_floor(world: World) -> None:
    """`prik bench`: both engines drain every record; the codec rows come with the pydantic floor."""
    done = world.prik("bench", "--messages", "500", "--json", timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    report: dict[str, Any] = codec.loads(done.stdout.encode())
    routing = report["routing"]
    assert routing["messages"] == 500
    assert routing["baseline_per_second"] > 0
    assert routing["router_per_second"] > 0
    assert routing["ratio"] == pytest.approx(routing["router_per_second"] / routing["baseline_per_second"])
    # Each engine's own process time over its drain: positive, and no absurd unit slip (seconds for µs).
    for key in ("baseline_cpu_us_per_message", "router_cpu_us_per_message"):
        assert 1 < routing[key] < 1_000_000, key
    rows = {row["operation"]: row for row in report["codec"]}
    assert set(rows) == {
        "parse (validate) vs orjson.loads",
        "to_bytes vs orjson.dumps",
        "floor: plain model, pydantic-core read vs orjson.loads",
        "floor: orjson writing the fields vs orjson.dumps",
    }
    for row in rows.values():
        assert row["baseline_us"] > 0
        assert row["prik_us"] > 0
        assert row["ratio"] == pytest.approx(row["prik_us"] / row["baseline_us"])
    # The floors share the baselines of prik's rows: the same orjson figures in the same run.
    assert (
        rows["floor: plain model, pydantic-core read vs orjson.loads"]["baseline_us"]
        == (rows["parse (validate) vs orjson.loads"]["baseline_us"])
    )
    assert report["peak_rss_mb"] > 0
