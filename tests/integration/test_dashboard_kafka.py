"""The dashboard's collector against the real broker, on records a browser test does not make."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest

from contracts import headers as h
from prik.dashboard import Collector, DashboardState
from prik.kafka import make_producer

from .conftest import World

pytestmark = pytest.mark.kafka

SOR = "123456789012"


async def letters(world: World, count: int) -> None:
    """Dead letters of lps-xmo's consumer for clinic SOR, on partition 0 of the dead-letter topic."""
    producer = make_producer(world.kafka)
    await producer.start()
    try:
        for _ in range(count):
            await producer.send_and_wait(
                world.topics.dlq,
                key=SOR.encode(),
                value=b"{}",
                partition=0,
                headers=[
                    (h.ERROR_STAGE, b"deliver"),
                    (h.ERROR_REASON, b"webhook answered HTTP 404"),
                    (h.ORIGINAL_TOPIC, world.topics.deliver("lps-xmo").encode()),
                ],
            )
    finally:
        await producer.stop()


def poison(world: World) -> None:
    """A letter whose header name is not UTF-8: aiokafka cannot decode its fetch, librdkafka writes it."""
    produced = subprocess.run(
        [
            b"kcat",
            b"-P",
            b"-b",
            world.kafka.bootstrap.encode(),
            b"-t",
            world.topics.dlq.encode(),
            b"-p",
            b"0",
            b"-k",
            SOR.encode(),
            b"-H",
            b"\xff\xfe=1",
        ],
        input=b"{}",
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert produced.returncode == 0, produced.stderr


async def state_when(collector: Collector, check: object, within: float = 60) -> DashboardState:
    deadline = time.monotonic() + within
    while True:
        state = await collector.refresh()
        if callable(check) and check(state):
            return state
        assert time.monotonic() < deadline, state.model_dump_json(indent=1)
        await asyncio.sleep(0.3)


async def test_dead_letters_are_counted_past_one_aiokafka_cannot_decode(world: World) -> None:
    await letters(world, 2)
    poison(world)
    await letters(world, 1)
    collector = Collector(world.kafka, world.topics, world.tenants, tick=0.5)
    await collector.start()
    try:
        # Read record by record from the beginning: every letter, the undecodable one too.
        state = await state_when(
            collector, lambda s: s.dlq is not None and s.dlq.exact and s.dlq.depth_records == 4
        )
        assert state.kafka_error is None
        assert [(f.clinic, f.lps, f.dead_letters) for f in state.failing_clinics] == [(SOR, "lps-xmo", 3)]
        # And it reads on after it.
        await letters(world, 2)
        state = await state_when(collector, lambda s: s.dlq is not None and s.dlq.depth_records == 6)
        assert state.dlq is not None
        assert state.dlq.exact
        assert state.failing_clinics[0].dead_letters == 5
        assert state.failing_clinics[0].last_reason == "webhook answered HTTP 404"
    finally:
        await collector.stop()
