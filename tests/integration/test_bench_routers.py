"""`prik bench routers` on the real broker: one JSON row per count, each count's backlog routed."""

from __future__ import annotations

import pytest

from contracts import codec
from prik.kafka import admin_client

from .conftest import World


async def _bench_topics(world: World) -> set[str]:
    async with admin_client(world.kafka) as admin:
        return {t for t in await admin.list_topics() if t.startswith("bench-")}


pytestmark = pytest.mark.kafka


async def test_bench_routers_reports_each_count_against_one_router(world: World) -> None:
    before = await _bench_topics(world)
    done = world.prik("bench", "routers", "--routers", "1,2", "--messages", "1000", "--json", timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    report = codec.loads(done.stdout.encode())
    assert report["bootstrap"] == world.kafka.bootstrap
    rows = report["routers"]
    assert [row["routers"] for row in rows] == [1, 2]
    assert all(row["messages"] == 1000 and row["per_second"] > 0 for row in rows)
    assert rows[0]["ratio"] == 1.0
    assert rows[1]["ratio"] == pytest.approx(rows[1]["per_second"] / rows[0]["per_second"], rel=0.01)
    assert await _bench_topics(world) <= before  # it leaves the broker as it found it


async def test_bench_fencing_moves_the_records_through_each_model(world: World) -> None:
    before = await _bench_topics(world)
    done = world.prik("bench", "fencing", "--messages", "1000", "--json", timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    report = codec.loads(done.stdout.encode())
    assert report["messages"] == 1000
    models = report["models"]
    assert [m["model"] for m in models] == [
        "aiokafka, one id",
        "aiokafka, id per partition",
        "librdkafka, KIP-447",
    ]
    assert all(m["per_second"] > 0 for m in models)
    assert models[0]["ratio"] == 1.0
    assert await _bench_topics(world) <= before
