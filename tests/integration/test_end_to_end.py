"""The whole path on a real broker: sender -> router (`prik broker run`) -> consumer -> reference LPS,
and every receipt and task status back to the sender's replies topic."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest

from consumers import Backoff, ClinicConsumer, ReferenceLps, WebhookDeliverer, make_webhook, sign_headers
from contracts import DirectoryEntry, Message, Outcome, Receipt, TaskStatusUpdate
from deploy.directory import load_directory
from producers import Publisher, read_replies, task_request, video_queue_notice

from .conftest import CLINIC, RouterProcess, World

pytestmark = pytest.mark.kafka

LPS = "lps-xmo"
VIDEO = "minlaege-video"
KOMMUNE = "kommune-0101"
CPR = "0101701234"
FAILING = "323456789012"
REFUSING = "423456789012"
UNKNOWN = "999999999999"
LPS_SOURCE = f"urn:prik:{LPS}"
ROUTER_SOURCE = "urn:prik:router"


@pytest.fixture
async def more_clinics(world: World) -> None:
    """Two more clinics of the same LPS: one whose endpoint fails for a while, one refusing everything."""
    await load_directory(
        world.kafka,
        world.topics,
        [DirectoryEntry(sor=FAILING, lps=LPS), DirectoryEntry(sor=REFUSING, lps=LPS)],
    )


@pytest.fixture
async def lps() -> AsyncIterator[ReferenceLps]:
    async with ReferenceLps() as server:
        yield server


@pytest.fixture
async def consumer(world: World, lps: ReferenceLps) -> AsyncIterator[ClinicConsumer]:
    runtime = ClinicConsumer(
        world.kafka,
        world.topics,
        LPS,
        WebhookDeliverer(lps.url, lps.secret, total_timeout=5),
        backoff=Backoff(base=0.2, cap=1.0),
        http_port=0,
        stop_grace=2.0,
    )
    async with runtime:
        yield runtime


async def replies(world: World, tenant: str, count: int, within: float = 90) -> list[Message]:
    """Everything on `tenant`'s replies topic, once there are at least `count` messages."""
    deadline = time.monotonic() + within
    while True:
        got = [m async for m in read_replies(world.kafka, world.topics, tenant)]
        if len(got) >= count or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.3)


def notice(clinic: str, expires_in: timedelta | None = None) -> Message:
    return video_queue_notice(
        VIDEO, clinic, event="joined", queue_entry_id="q-1", cpr=CPR, expires_in=expires_in
    )


async def test_every_outcome_receipt_reaches_the_sender(
    world: World,
    more_clinics: None,
    router: RouterProcess,
    lps: ReferenceLps,
    consumer: ClinicConsumer,
) -> None:
    lps.fail_clinic(FAILING, 503, for_seconds=120)
    # A 400, not a 410: a 410 would disable the LPS's whole endpoint, not one clinic.
    lps.fail_clinic(REFUSING, 400, for_seconds=120)
    delivered = notice(CLINIC)
    stale = notice(CLINIC, expires_in=timedelta(seconds=-1))  # expired before the router sees it
    short_lived = notice(FAILING, expires_in=timedelta(seconds=2))  # expires while the clinic fails
    unknown = notice(UNKNOWN)  # refused by the router: not in the directory
    refused = notice(REFUSING)  # 400 from the LPS: dead-lettered at once
    sent = [delivered, stale, short_lived, unknown, refused]
    async with Publisher(world.kafka, VIDEO, world.topics) as publisher:
        await publisher.publish_many(sent)

    got = await replies(world, VIDEO, len(sent))
    receipts = {m.data.message_id: m for m in got if isinstance(m, Receipt)}
    expected = {
        delivered.id: (Outcome.DELIVERED, LPS_SOURCE),
        stale.id: (Outcome.EXPIRED, ROUTER_SOURCE),
        short_lived.id: (Outcome.EXPIRED, LPS_SOURCE),
        unknown.id: (Outcome.REJECTED, ROUTER_SOURCE),
        refused.id: (Outcome.DEAD_LETTERED, LPS_SOURCE),
    }
    assert {i: (r.data.outcome, r.source) for i, r in receipts.items()} == expected
    assert all(r.data.message_source == f"urn:prik:{VIDEO}" for r in receipts.values())
    assert receipts[refused.id].data.reason is not None
    # Only the deliverable one reached the clinic; nothing expired was ever shown.
    assert lps.ids() == {delivered.id}

    # Exactly one receipt each, also after a moment for stragglers.
    await asyncio.sleep(2)
    again = [m async for m in read_replies(world.kafka, world.topics, VIDEO)]
    counts = Counter(m.data.message_id for m in again if isinstance(m, Receipt))
    assert counts == Counter({message.id: 1 for message in sent})


async def test_task_round_trip_through_the_http_endpoint(
    world: World, router: RouterProcess, lps: ReferenceLps, consumer: ClinicConsumer
) -> None:
    task = task_request(KOMMUNE, CLINIC, code="kol-opfoelgning", description="Opfølgning", cpr=CPR)
    task_id = str(task.data.task_id)
    async with Publisher(world.kafka, KOMMUNE, world.topics) as publisher:
        await publisher.publish(task)
    await lps.wait_for(1, timeout=60)
    assert lps.received[0].message_id == task.id

    url = f"http://127.0.0.1:{consumer.http_port}/tasks/{task_id}/status"
    webhook = make_webhook(lps.secret)
    answer_ids = []
    async with aiohttp.ClientSession() as http:
        # The path is not signed, so the signed body names the task too.
        body = f'{{"task_id": "{task_id}", "status": "received"}}'.encode()
        unsigned = {"content-type": "application/json"}
        async with http.post(url, data=body, headers=unsigned) as response:
            assert response.status == 401
        for n, status in enumerate(("received", "accepted", "in-progress", "completed")):
            body = f'{{"task_id": "{task_id}", "status": "{status}"}}'.encode()
            headers = sign_headers(webhook, f"answer-{n}", body)
            async with http.post(url, data=body, headers=headers) as response:
                assert response.status == 202, await response.text()
                answer_ids.append((await response.json())["id"])

    # The requester: one `delivered` receipt for its request, then every status, in order.
    got = await replies(world, KOMMUNE, 5)
    [request_receipt] = [m for m in got if isinstance(m, Receipt)]
    assert request_receipt.data.message_id == task.id
    assert request_receipt.data.outcome is Outcome.DELIVERED
    statuses = [m for m in got if isinstance(m, TaskStatusUpdate)]
    assert [str(m.data.task_id) for m in statuses] == [task_id] * 4
    assert [m.data.status.value for m in statuses] == ["received", "accepted", "in-progress", "completed"]
    assert [m.id for m in statuses] == answer_ids
    assert all(m.source == LPS_SOURCE for m in statuses)

    # The LPS: the router confirms each status it handed on.
    lps_replies = await replies(world, LPS, 4)
    confirmed = {m.data.message_id: m.data.outcome for m in lps_replies if isinstance(m, Receipt)}
    assert confirmed == dict.fromkeys(answer_ids, Outcome.DELIVERED)
