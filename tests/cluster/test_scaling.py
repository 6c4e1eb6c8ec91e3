"""Routers and consumers scaled out on the 3-node cluster: crashes and a zombie lose or duplicate nothing."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from consumers import ReferenceLps
from contracts import DirectoryEntry, Message
from deploy.directory import load_directory
from producers import Publisher, video_queue_notice

from .conftest import CLINIC, OTHER_CLINIC, ClusterWorld, RouterProcess

pytestmark = pytest.mark.cluster

VIDEO = "minlaege-video"
CPR = "0101701234"
# aiokafka's default session timeout: a paused member is out of the group after it.
SESSION_TIMEOUT = 10.0
# More clinics than delivery partitions' owners, so both consumers of one LPS have work.
XMO_CLINICS = [CLINIC, *(f"3234567890{i:02d}" for i in range(7))]


def notice(clinic: str, number: int) -> Message:
    return video_queue_notice(VIDEO, clinic, event="joined", queue_entry_id=f"q-{number}", cpr=CPR)


async def _delivery_counts(world: ClusterWorld) -> Counter[str]:
    """How often each message id is on the delivery topics, reading committed data only."""
    counts: Counter[str] = Counter()
    for lps in ("lps-xmo", "lps-other"):
        counts.update(m.id for _, m, _ in await world.read(world.topics.deliver(lps)) if m is not None)
    return counts


async def _settled_counts(world: ClusterWorld, expected: set[str], within: float) -> Counter[str]:
    """The delivery topics once every expected id is there (or time is up), after a quiet spell.

    The quiet spell gives a late (zombie) transaction the chance to land, so a
    duplicate would be counted rather than missed.
    """
    deadline = time.monotonic() + within
    counts = await _delivery_counts(world)
    while not expected <= set(counts) and time.monotonic() < deadline:
        await asyncio.sleep(1)
        counts = await _delivery_counts(world)
    await asyncio.sleep(SESSION_TIMEOUT)
    return await _delivery_counts(world)


async def test_three_routers_one_killed_one_a_zombie_route_everything_exactly_once(
    cluster_world: ClusterWorld,
) -> None:
    world = cluster_world
    routers = [RouterProcess(world, f"r{i}") for i in (1, 2, 3)]
    killed, zombie, survivor = routers
    stream, chunk = 3000, 100
    sent = [notice(CLINIC if i % 2 else OTHER_CLINIC, i) for i in range(stream)]
    # Many clinics, so the burst spreads over every partition and so over every router.
    burst = [notice(f"4234567890{i % 97:02d}", stream + i) for i in range(1500)]
    await load_directory(
        world.kafka,
        world.topics,
        [DirectoryEntry(sor=f"4234567890{i:02d}", lps="lps-xmo") for i in range(97)],
    )
    sent += burst
    try:
        for router in routers:
            router.start()
        for router in routers:
            router.wait_started(timeout=90)
        async with Publisher(world.kafka, VIDEO, world.topics) as publisher:
            for number, start in enumerate(range(0, stream, chunk)):
                if number == 5:
                    killed.kill()
                if number == 10:
                    # Paused while routing a burst, so inside a transaction: it misses its
                    # session, its partitions go to the survivor, and then it wakes up
                    # and tries to commit what the survivor has routed meanwhile.
                    await publisher.publish_many(burst)
                    await asyncio.sleep(0.15)
                    assert zombie.process is not None
                    zombie.process.send_signal(signal.SIGSTOP)
                    paused_at = time.monotonic()
                if number == 20:
                    await asyncio.sleep(max(0.0, paused_at + SESSION_TIMEOUT + 5 - time.monotonic()))
                    assert zombie.process is not None
                    zombie.process.send_signal(signal.SIGCONT)
                await publisher.publish_many(sent[start : start + chunk])
                await asyncio.sleep(0.5)
        counts = await _settled_counts(world, {m.id for m in sent}, within=180)
        for router in (zombie, survivor):
            assert router.process is not None
            assert router.process.poll() is None, router.output().decode()[-3000:]
    finally:
        for router in routers:
            if router.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    router.process.send_signal(signal.SIGCONT)
                if router.process.poll() is None:
                    router.kill()
    missing = {m.id for m in sent} - set(counts)
    duplicated = {i: n for i, n in counts.items() if n > 1}
    sys.stdout.write(
        f"\nthree routers: {len(sent)} sent, {len(set(counts))} routed, {len(missing)} missing, "
        f"{len(duplicated)} duplicated ({sum(duplicated.values()) - len(duplicated)} extra copies)\n"
    )
    assert not missing, f"{len(missing)} of {len(sent)} never routed"
    assert duplicated == {}, f"{len(duplicated)} ids on the delivery topics more than once"
    assert set(counts) == {m.id for m in sent}


class ConsumerProcess:
    """`prik consumer run` for one LPS as a child process, as an operator runs it."""

    def __init__(self, world: ClusterWorld, lps: str, lps_server: ReferenceLps, name: str) -> None:
        self.log = world.root / f"consumer-{name}.log"
        self._args = [
            sys.executable,
            "-m",
            "prik",
            "consumer",
            "run",
            "--lps",
            lps,
            "--webhook",
            lps_server.url,
            "--http-port",
            "0",
        ]
        self._env = {**world.env(), "PRIK_WEBHOOK_SECRETS": lps_server.secret}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self._args, env=self._env, stdout=log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    async def wait_assigned(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while "partitions assigned" not in self.output():
            assert self.process is not None
            assert self.process.poll() is None, self.output()[-2000:]
            assert time.monotonic() < deadline, self.output()[-2000:]
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


async def test_two_consumers_for_one_lps_one_killed_lose_nothing_and_keep_each_clinics_order(
    cluster_world: ClusterWorld,
) -> None:
    world = cluster_world
    await load_directory(
        world.kafka, world.topics, [DirectoryEntry(sor=sor, lps="lps-xmo") for sor in XMO_CLINICS]
    )
    stream, chunk = 2000, 100
    sent = [notice(XMO_CLINICS[i % len(XMO_CLINICS)], i) for i in range(stream)]
    router = RouterProcess(world, "router")
    async with ReferenceLps() as lps:
        consumers = [ConsumerProcess(world, "lps-xmo", lps, name) for name in ("a", "b")]
        try:
            router.start()
            router.wait_started(timeout=90)
            for consumer in consumers:
                consumer.start()
            for consumer in consumers:
                await consumer.wait_assigned()
            async with Publisher(world.kafka, VIDEO, world.topics) as publisher:
                for number, start in enumerate(range(0, stream, chunk)):
                    if number == stream // chunk // 2:
                        # A crash: no graceful leave, deliveries in flight, offsets uncommitted.
                        consumers[0].stop()
                    await publisher.publish_many(sent[start : start + chunk])
                    await asyncio.sleep(0.3)
            await lps.wait_for(stream, timeout=180)
            assert consumers[1].process is not None
            assert consumers[1].process.poll() is None, consumers[1].output()[-3000:]
        finally:
            for consumer in consumers:
                consumer.stop()
            router.terminate()
    assert lps.ids() == {m.id for m in sent}
    assert lps.bad_signatures == 0
    for clinic in XMO_CLINICS:
        # First copies in arrival order: a redelivery after the crash may repeat, never reorder.
        published = [m.id for m in sent if m.recipient == clinic]
        assert [r.message_id for r in lps.for_clinic(clinic)] == published, clinic
    redelivered = lps.duplicates
    sys.stdout.write(
        f"\ntwo consumers: {stream} sent, {len(lps.ids())} delivered, {redelivered} redelivered\n"
    )
