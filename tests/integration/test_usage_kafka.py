"""`prik usage` on a real broker: known traffic through the router and the consumers, counted exactly,
the same while the router is down and after everything restarts; a window counts only its own part."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumers import Backoff, ClinicConsumer, ReferenceLps, WebhookDeliverer
from contracts import DirectoryEntry, Message, Receipt, TaskRequest, TaskStatusUpdate, rfc3339, to_bytes
from deploy.directory import load_directory
from prik.accounting import traffic, usage
from prik.kafka import make_producer
from producers import (
    Publisher,
    read_records,
    read_replies,
    referral_status_notice,
    task_request,
    task_status,
    video_queue_notice,
)

from .conftest import CLINIC, OTHER_CLINIC, RouterProcess, World

pytestmark = pytest.mark.kafka

VIDEO, KOMMUNE, LPS, OTHER_LPS = "minlaege-video", "kommune-0101", "lps-xmo", "lps-other"
SECOND = "523456789012"  # lps-xmo's second clinic
FAILING = "623456789012"  # lps-xmo's clinic whose endpoint answers 503: its messages end dead-lettered
UNKNOWN = "999999999999"  # in no directory: the router refuses it
CPR = "0101701234"


def notice(clinic: str, expires_in: timedelta | None = None) -> Message:
    return video_queue_notice(
        VIDEO, clinic, event="joined", queue_entry_id="q-1", cpr=CPR, expires_in=expires_in
    )


def referral(clinic: str) -> Message:
    return referral_status_notice(
        KOMMUNE,
        clinic,
        referral_id="r-1",
        municipality_code="101",
        offer="TeleKOL",
        status="accepted",
        cpr=CPR,
    )


async def produce_raw(world: World, tenant: str, *values: bytes) -> None:
    """Records a Publisher would refuse to send: straight onto the tenant's ingress topic."""
    producer = make_producer(world.kafka)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(world.topics.ingress(tenant), value=value, key=b"raw")
    finally:
        await producer.stop()


async def wait_for(what: str, check: Callable[[], Any], within: float = 90) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.3)


async def replies_of(world: World, tenant: str) -> list[Message]:
    return [m async for m in read_replies(world.kafka, world.topics, tenant)]


async def receipts_for(world: World, tenant: str, count: int) -> None:
    async def enough() -> bool:
        got = [m for m in await replies_of(world, tenant) if isinstance(m, Receipt)]
        return len(got) >= count

    await wait_for(f"{count} receipts on {tenant}'s replies topic", enough)


async def ingress_records(world: World, tenant: str) -> list[Any]:
    return [r async for r in read_records(world.kafka, world.topics.ingress(tenant))]


def usage_json(world: World, *args: str) -> dict[str, Any]:
    result = world.prik("usage", "--json", *args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


class Clinics:
    """Both LPS vendors' consumers, each delivering by signed webhook to its own reference LPS."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.lps = {LPS: ReferenceLps(), OTHER_LPS: ReferenceLps()}
        self._stack: AsyncExitStack | None = None

    async def start_servers(self) -> None:
        for server in self.lps.values():
            await server.start()

    async def start(self) -> None:
        self._stack = AsyncExitStack()
        for lps, server in self.lps.items():
            consumer = ClinicConsumer(
                self.world.kafka,
                self.world.topics,
                lps,
                WebhookDeliverer(server.url, server.secret, total_timeout=5),
                backoff=Backoff(base=0.2, cap=0.5),
                # Short, so the failing clinic's messages are dead-lettered within the test.
                max_retry_time=2.0,
                stop_grace=2.0,
            )
            await self._stack.enter_async_context(consumer)

    async def stop(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None

    async def close(self) -> None:
        await self.stop()
        for server in self.lps.values():
            await server.stop()


@pytest.fixture
async def clinics(world: World) -> AsyncIterator[Clinics]:
    await load_directory(
        world.kafka,
        world.topics,
        [DirectoryEntry(sor=SECOND, lps=LPS), DirectoryEntry(sor=FAILING, lps=LPS)],
    )
    side = Clinics(world)
    await side.start_servers()
    side.lps[LPS].fail_clinic(FAILING, 503, for_seconds=600)
    await side.start()
    try:
        yield side
    finally:
        await side.close()


def peak_of(records: list[Any]) -> dict[str, Any]:
    """The busiest minute and its busiest tenant, worked out from every ingress record read back."""
    per_minute: Counter[int] = Counter()
    per_tenant: Counter[tuple[int, str]] = Counter()
    for tenant, record in records:
        minute = record.timestamp // 60_000
        per_minute[minute] += 1
        per_tenant[minute, tenant] += 1
    minute, count = max(per_minute.items(), key=lambda item: (item[1], item[0]))
    tenant = min(((t, n) for (m, t), n in per_tenant.items() if m == minute), key=lambda x: (-x[1], x[0]))[0]
    at = datetime.fromtimestamp(minute * 60, UTC)
    return {"per_minute": count, "at": rfc3339(at), "tenant": tenant}


@dataclass
class Traffic:
    """Known traffic, each message with the outcome it must end in."""

    to_xmo: list[Message] = field(  # delivered by lps-xmo, to two clinics
        default_factory=lambda: [notice(CLINIC), notice(CLINIC), notice(CLINIC), notice(SECOND)]
    )
    to_other: list[Message] = field(default_factory=lambda: [notice(OTHER_CLINIC), notice(OTHER_CLINIC)])
    stale: list[Message] = field(  # expired at the router
        default_factory=lambda: [notice(CLINIC, expires_in=timedelta(seconds=-1)) for _ in range(2)]
    )
    unknown: list[Message] = field(default_factory=lambda: [notice(UNKNOWN)])  # rejected: no such clinic
    failing: list[Message] = field(  # 503 until max_retry_time: dead-lettered
        default_factory=lambda: [notice(FAILING) for _ in range(3)]
    )
    video_raw: tuple[bytes, ...] = (b"not json at all", b'{"specversion": "1.0", "id": "broken-1"}')
    task: TaskRequest = field(
        default_factory=lambda: task_request(KOMMUNE, CLINIC, code="KOL-TELE", description="TeleKOL", cpr=CPR)
    )
    refs: list[Message] = field(default_factory=lambda: [referral(OTHER_CLINIC), referral(OTHER_CLINIC)])
    # On the municipality's topic, claiming to be the video platform: it counts for the municipality.
    forged: bytes = field(default_factory=lambda: to_bytes(notice(CLINIC)))

    @property
    def video(self) -> list[Message]:
        return [*self.to_xmo, *self.to_other, *self.stale, *self.unknown, *self.failing]

    async def send(self, world: World) -> None:
        async with Publisher(world.kafka, VIDEO, world.topics) as video:
            await video.publish_many(self.video)
        async with Publisher(world.kafka, KOMMUNE, world.topics) as kommune:
            await kommune.publish_many([self.task, *self.refs])
        await produce_raw(world, VIDEO, *self.video_raw)
        await produce_raw(world, KOMMUNE, self.forged)
        await receipts_for(world, KOMMUNE, 4)
        # The clinic answers the task; the router hands the status to the requester and confirms it.
        async with Publisher(world.kafka, LPS, world.topics) as lps_xmo:
            await lps_xmo.publish(task_status(LPS, self.task.data.task_id, "received"))
        await receipts_for(world, VIDEO, len(self.video) + len(self.video_raw))
        await receipts_for(world, LPS, 1)

        async def status_forwarded() -> bool:
            return any(isinstance(m, TaskStatusUpdate) for m in await replies_of(world, KOMMUNE))

        await wait_for("the task status forwarded to the requester", status_forwarded)


async def test_usage_accounts_for_every_message_also_after_restarts(
    world: World, clinics: Clinics, routers: Callable[..., RouterProcess]
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    router = routers("usage")
    traffic = Traffic()
    await traffic.send(world)

    # -- what must come out, to the message ------------------------------------------------
    records = {t: await ingress_records(world, t) for t in (VIDEO, KOMMUNE, LPS, OTHER_LPS)}
    counts = {t: len(rs) for t, rs in records.items()}
    sizes = {t: sum(len(r.value or b"") for r in rs) for t, rs in records.items()}
    assert counts[VIDEO] == 14
    assert sizes[VIDEO] == sum(len(to_bytes(m)) for m in traffic.video) + sum(map(len, traffic.video_raw))
    assert counts[KOMMUNE] == 4
    assert sizes[KOMMUNE] == sum(len(to_bytes(m)) for m in [traffic.task, *traffic.refs]) + len(
        traffic.forged
    )
    # lps-xmo: a receipt for each of its 8 messages, and its task status; lps-other: 4 receipts.
    assert (counts[LPS], counts[OTHER_LPS]) == (9, 4)

    def sender(messages: int, size: int, **outcomes: int) -> dict[str, int]:
        row = {"messages": messages, "bytes": size, "delivered": 0, "expired": 0}
        row |= {"rejected": 0, "dead_lettered": 0}
        return row | outcomes

    expected = {
        "since": rfc3339(since),
        "senders": {
            VIDEO: sender(14, sizes[VIDEO], delivered=6, expired=2, rejected=3, dead_lettered=3),
            KOMMUNE: sender(4, sizes[KOMMUNE], delivered=3, rejected=1),
            # Its task status, confirmed by the router; its receipts get no receipt of their own.
            LPS: sender(9, sizes[LPS], delivered=1),
            OTHER_LPS: sender(4, sizes[OTHER_LPS]),
        },
        "receivers": {
            LPS: {"delivered": 5, "dead_lettered": 3, "clinics": 2},
            OTHER_LPS: {"delivered": 4, "dead_lettered": 0, "clinics": 1},
        },
        "peak": peak_of([(t, r) for t, rs in records.items() for r in rs]),
    }
    window = ("--since", rfc3339(since))
    assert usage_json(world, *window) == expected
    assert sorted(clinics.lps[LPS].ids()) == sorted(m.id for m in [*traffic.to_xmo, traffic.task])

    # -- the table ----------------------------------------------------------------------
    table = world.prik("usage", *window)
    assert table.returncode == 0, table.stderr
    for name in (VIDEO, KOMMUNE, LPS, OTHER_LPS, "Senders", "Receivers", "Peak", "messages/min"):
        assert name in table.stdout
    assert CPR not in table.stdout + table.stderr

    # -- the router down, then everything restarted: Kafka still says the same -------------
    assert router.terminate() == 0
    await clinics.stop()
    assert usage_json(world, *window) == expected
    routers("usage")
    await clinics.start()
    await asyncio.sleep(2)  # let them settle: nothing new may be written
    assert usage_json(world, *window) == expected
    # Nothing was delivered twice across the restart either.
    assert len(clinics.lps[LPS].received) == len(traffic.to_xmo) + 1


async def test_a_since_window_counts_only_the_later_traffic(
    world: World, routers: Callable[..., RouterProcess]
) -> None:
    routers("window")
    earlier = [notice(UNKNOWN) for _ in range(3)]
    later = [notice(UNKNOWN) for _ in range(2)]
    async with Publisher(world.kafka, VIDEO, world.topics) as video:
        await video.publish_many(earlier)
        await produce_raw(world, VIDEO, b"earlier garbage")
        await receipts_for(world, VIDEO, 4)
        sent_at = time.monotonic()
        # The earlier part must lie well before the window: 8 s wide, 16 s back.
        await asyncio.sleep(16)
        await video.publish_many(later)
    await receipts_for(world, VIDEO, 6)
    assert time.monotonic() - sent_at < 60

    got = usage_json(world, "--since", "8s")
    size = sum(len(to_bytes(m)) for m in later)
    assert got["senders"][VIDEO] == {
        "messages": 2,
        "bytes": size,
        "delivered": 0,
        "expired": 0,
        # The earlier rejections' receipts are read too (receipts lag their messages); they must not count.
        "rejected": 2,
        "dead_lettered": 0,
    }
    assert all(row["messages"] == 0 for tenant, row in got["senders"].items() if tenant != VIDEO)
    assert (got["peak"]["per_minute"], got["peak"]["tenant"]) in {(2, VIDEO), (1, VIDEO)}
    # Over a wider window, everything.
    wide = usage_json(world, "--since", "10m")
    assert wide["senders"][VIDEO]["messages"] == 6
    assert wide["senders"][VIDEO]["rejected"] == 6


async def test_a_short_window_reads_only_its_own_records(world: World) -> None:
    """offsets_for_times: a window reads from its start, never the history before it."""
    before = datetime.now(UTC) - timedelta(seconds=1)
    async with Publisher(world.kafka, VIDEO, world.topics) as video:
        await video.publish_many([notice(CLINIC) for _ in range(200)])
        await asyncio.sleep(1.5)
        middle = datetime.now(UTC)
        await asyncio.sleep(1.5)
        await video.publish_many([notice(CLINIC) for _ in range(3)])

    planned: list[int] = []
    recent = await usage(
        world.kafka, world.topics, world.tenants, middle, progress=lambda _done, total: planned.append(total)
    )
    assert recent.senders[VIDEO].messages == 3
    # Only the window's 3 records were to be read (no router ran: the replies topics are empty).
    assert set(planned) == {3}
    assert recent.missing_topics == ()

    earlier = await usage(world.kafka, world.topics, world.tenants, before, until=middle)
    assert earlier.senders[VIDEO].messages == 200
    assert earlier.senders[VIDEO].open == 200
    assert earlier.peak.tenant == VIDEO
    assert earlier.until == middle

    # The load alone, as a dashboard asks for it: the same counts and peak, nothing judged.
    load = await traffic(world.kafka, world.topics, world.tenants, before, until=middle)
    assert (load.senders[VIDEO].messages, load.senders[VIDEO].bytes) == (200, earlier.senders[VIDEO].bytes)
    assert load.peak == earlier.peak
    assert load.senders[VIDEO].open == 0
