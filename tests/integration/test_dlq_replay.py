"""`prik dlq replay` on the real broker: a dead letter is a pointer, never the bytes to send.

Anyone allowed to write the dead-letter topic (every LPS may) can write any letter there,
so replay re-reads the original record from the position the letter names and sends
that, to the topic it came from, or skips the letter with its reason.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import RecordsToDelete

from consumers import Backoff, CallbackDeliverer, ClinicConsumer, DeliveryRefused
from contracts import Message, to_bytes
from contracts import headers as h
from prik.kafka import admin_client, make_producer
from producers import build
from producers.reading import read_records

from .conftest import CLINIC, RouterProcess, World

SENDER = "minlaege-video"  # tenant A: the one a forger would like to speak as
LPS = "lps-xmo"  # the LPS serving CLINIC, allowed to write the dead-letter topic
CPR = "0101901234"

Headers = Sequence[tuple[str, bytes]]


def _notice(queue_entry: str = "q-1") -> Message:
    return build.video_queue_notice(SENDER, CLINIC, event="joined", queue_entry_id=queue_entry, cpr=CPR)


def _position(topic: str, partition: int | str, offset: int | str) -> list[tuple[str, bytes]]:
    return [
        (h.ERROR_STAGE, b"route"),
        (h.ERROR_REASON, b"unknown clinic"),
        (h.ORIGINAL_TOPIC, topic.encode()),
        (h.ORIGINAL_PARTITION, str(partition).encode()),
        (h.ORIGINAL_OFFSET, str(offset).encode()),
    ]


async def _write(
    world: World,
    topic: str,
    value: bytes | None,
    *,
    key: bytes | None,
    headers: Headers = (),
    partition: int = 0,
) -> int:
    """Write one record as it is (what a party with WRITE on `topic` can do); returns its offset."""
    producer = make_producer(world.kafka, client_id="test-writer")
    await producer.start()
    try:
        sent = await producer.send_and_wait(topic, value, key=key, headers=list(headers), partition=partition)
    finally:
        await producer.stop()
    offset: int = sent.offset
    return offset


async def _records(world: World, topic: str) -> list[Any]:
    return [record async for record in read_records(world.kafka, topic)]


async def _wait_records(world: World, topic: str, count: int, within: float = 60) -> list[Any]:
    deadline = time.monotonic() + within
    while True:
        got = await _records(world, topic)
        if len(got) >= count or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.3)


async def _every_ingress(world: World) -> list[Any]:
    found = []
    for tenant in world.tenants.ids:
        found.extend(await _records(world, world.topics.ingress(tenant)))
    return found


def _replay_marks(record: Any) -> list[bytes]:
    return [value for name, value in record.headers if name == h.REPLAY]


def _one_line_each(stderr: str) -> list[str]:
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr
    return lines


@pytest.mark.kafka
async def test_a_forged_letter_is_never_published_as_the_tenant_it_names(world: World) -> None:
    ingress = world.topics.ingress(SENDER)
    genuine = _notice("genuine")
    at = await _write(world, ingress, to_bytes(genuine), key=CLINIC.encode())
    end = at + 1
    # The LPS forges messages claiming tenant A and letters naming A's ingress topic.
    over_another = _notice("forged-over-a-real-record")
    over_nothing = _notice("forged-past-the-end")
    await _write(
        world,
        world.topics.dlq,
        to_bytes(over_another),
        key=CLINIC.encode(),
        headers=_position(ingress, 0, at),
    )
    await _write(
        world,
        world.topics.dlq,
        to_bytes(over_nothing),
        key=CLINIC.encode(),
        headers=_position(ingress, 0, end + 5),
    )
    # Same forgery with the id in a header and no value: still not a copy of what lies there.
    await _write(
        world,
        world.topics.dlq,
        None,
        key=CLINIC.encode(),
        headers=[(h.CE_PREFIX + "id", over_another.id.encode()), *_position(ingress, 0, at)],
    )

    by_id = world.prik("dlq", "replay", "--id", over_another.id)
    assert by_id.returncode == 1
    assert (
        "replayed 0, skipped 2 (2 letter does not match the record at its original position)" in by_id.stdout
    )
    assert len(_one_line_each(by_id.stderr)) == 2

    replayed = world.prik("dlq", "replay", "--all")
    assert replayed.returncode == 1, replayed.stderr
    assert "replayed 0, skipped 3" in replayed.stdout
    assert "2 letter does not match the record at its original position" in replayed.stdout
    assert "1 original offset is beyond the end of its topic" in replayed.stdout
    assert len(_one_line_each(replayed.stderr)) == 3

    # Tenant A's ingress holds its one genuine record, and no ingress topic anything forged.
    assert [r.value for r in await _records(world, ingress)] == [to_bytes(genuine)]
    published = await _every_ingress(world)
    assert not [
        r for r in published if over_another.id.encode() in r.value or over_nothing.id.encode() in r.value
    ]
    again = world.prik("dlq", "replay", "--all")
    assert (again.returncode, again.stdout.strip()) == (0, f"nothing left to replay in {world.topics.dlq}")


@pytest.mark.kafka
async def test_a_letter_carrying_nothing_to_check_replays_the_real_original_not_its_own_bytes(
    world: World,
) -> None:
    ingress = world.topics.ingress(SENDER)
    genuine = _notice("genuine")
    genuine_headers = [(h.CONTENT_TYPE, b"application/cloudevents+json"), ("traceparent", b"00-abc-def-01")]
    at = await _write(
        world, ingress, to_bytes(genuine), key=CLINIC.encode(), headers=genuine_headers, partition=2
    )
    # No value and no id to compare (as the router writes a letter too large to keep): the
    # letter's own headers still say other things, and none of them may travel.
    forged_headers = [
        ("ce_source", b"urn:prik:kommune-0101"),
        ("x-forged", b"yes"),
        *_position(ingress, 2, at),
    ]
    await _write(world, world.topics.dlq, None, key=CLINIC.encode(), headers=forged_headers)

    replayed = world.prik("dlq", "replay", "--all")
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1, skipped 0" in replayed.stdout

    first, again = await _records(world, ingress)
    assert (again.partition, again.key, again.value) == (2, CLINIC.encode(), to_bytes(genuine))
    assert [(n, v) for n, v in again.headers if n != h.REPLAY] == genuine_headers
    assert len(_replay_marks(again)) == 1
    assert first.offset == at


@pytest.mark.kafka
async def test_a_router_dead_letter_replays_the_original_bytes_to_its_ingress_topic(
    world: World, router: RouterProcess
) -> None:
    ingress = world.topics.ingress(SENDER)
    invalid = []
    for entry in ("a", "b"):
        message = json.loads(to_bytes(_notice(entry)))
        message["recipient"] = "not-a-sor"  # valid JSON, refused at validation
        invalid.append((message["id"], json.dumps(message, separators=(",", ":")).encode()))
    # Two in a row on one partition: the replay reads them back one after the other.
    at = [
        await _write(world, ingress, value, key=b"some-key", headers=[("x-sender", b"1")], partition=1)
        for _, value in invalid
    ]
    letters = await _wait_records(world, world.topics.dlq, 2)
    assert [dict(d.headers)[h.ORIGINAL_OFFSET] for d in letters] == [str(o).encode() for o in at]

    replayed = world.prik("dlq", "replay", "--all")
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 2, skipped 0" in replayed.stdout
    records = await _wait_records(world, ingress, 4)
    assert [r.offset for r in records[:2]] == at
    for (_, value), letter, again in zip(invalid, letters, records[2:], strict=True):
        assert (again.partition, again.key, again.value) == (1, b"some-key", value)
        assert ("x-sender", b"1") in again.headers
        assert _replay_marks(again) == [f"{world.topics.dlq}:{letter.partition}:{letter.offset}".encode()]
    # The router checked them again from the start, and refused them again.
    dead = await _wait_records(world, world.topics.dlq, 4)
    assert [dict(d.headers)[h.ORIGINAL_OFFSET] for d in dead[2:]] == [
        str(r.offset).encode() for r in records[2:]
    ]
    # --id sends every letter of that id: the first refusal's original, and the replay's.
    by_id = world.prik("dlq", "replay", "--id", invalid[0][0])
    assert by_id.returncode == 0, by_id.stderr
    assert "replayed 2, skipped 0" in by_id.stdout
    assert router.terminate() == 0


@pytest.mark.kafka
async def test_a_consumer_dead_letter_replays_to_its_delivery_topic(world: World) -> None:
    deliver = world.topics.deliver(LPS)
    notice = _notice()
    refusing = True
    accepted: list[Message] = []
    delivered = asyncio.Event()

    async def lps(message: Message) -> None:
        if refusing:
            msg = "400 Bad Request"
            raise DeliveryRefused(msg)
        accepted.append(message)
        delivered.set()

    at = await _write(world, deliver, to_bytes(notice), key=CLINIC.encode(), partition=3)
    consumer = ClinicConsumer(
        world.kafka,
        world.topics,
        LPS,
        CallbackDeliverer(lps),
        backoff=Backoff(base=0.1, cap=0.5),
        stop_grace=2.0,
    )
    async with consumer:
        [letter] = await _wait_records(world, world.topics.dlq, 1)
        assert dict(letter.headers)[h.ORIGINAL_TOPIC] == deliver.encode()
        refusing = False  # the operator fixed the endpoint
        replayed = await asyncio.to_thread(world.prik, "dlq", "replay", "--all")
        assert replayed.returncode == 0, replayed.stderr
        assert "replayed 1, skipped 0" in replayed.stdout
        await asyncio.wait_for(delivered.wait(), 60)
    assert [m.id for m in accepted] == [notice.id]
    first, again = await _records(world, deliver)
    assert (first.offset, again.partition, again.key, again.value) == (
        at,
        3,
        CLINIC.encode(),
        to_bytes(notice),
    )
    assert len(_replay_marks(again)) == 1
    # Not through the sender's ingress topic (where it would be routed again as that sender).
    assert await _records(world, world.topics.ingress(SENDER)) == []


@pytest.mark.kafka
async def test_letters_naming_no_readable_original_are_skipped_with_their_reasons(world: World) -> None:
    topics = world.topics
    ingress = topics.ingress(SENDER)
    for i in range(3):
        await _write(world, ingress, to_bytes(_notice(f"old-{i}")), key=CLINIC.encode(), partition=1)
    async with admin_client(world.kafka) as admin:
        await admin.delete_records(
            {TopicPartition(ingress, 1): RecordsToDelete(before_offset=2)}, timeout_ms=30_000
        )
    value = to_bytes(_notice("forged"))
    cases: list[Headers] = [
        [],
        _position("__consumer_offsets", 0, 0),
        _position(topics.dlq, 0, 0),
        _position(topics.directory, 0, 0),
        _position(topics.replies(SENDER), 0, 0),
        _position(f"prik.ingress.{SENDER}", 0, 0),  # another prefix
        _position(f"{ingress}\n", 0, 0),
        _position(CPR, 0, 0),
        _position(ingress, -1, 0),
        _position(ingress, 0, "-1"),
        _position(ingress, 0, "12abc"),
        _position(ingress, 0, "²"),
        _position(ingress, 0, "9" * 20),
        [*_position(ingress, 0, 0), (h.ORIGINAL_OFFSET, b"1")],  # two offsets: which one?
        _position(topics.ingress("nobody"), 0, 0),
        _position(ingress, 99, 0),
        _position(ingress, 1, 0),  # deleted
        _position(ingress, 1, 3),  # past the end
    ]
    for headers in cases:
        await _write(
            world, topics.dlq, value, key=CLINIC.encode(), headers=[*headers, (h.ERROR_REASON, CPR.encode())]
        )

    listed = world.prik("dlq", "list")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.strip().splitlines()]
    assert len(rows) == len(cases)
    assert sum(row[-1].startswith("no: ") for row in rows) == 14  # what the headers alone tell
    assert CPR not in listed.stdout

    replayed = world.prik("dlq", "replay", "--all")
    assert replayed.returncode == 1
    assert CPR not in replayed.stdout + replayed.stderr
    assert len(_one_line_each(replayed.stderr)) == len(cases)
    summary = replayed.stdout.strip()
    assert summary.startswith(f"replayed 0, skipped {len(cases)} (")
    for count, why in [
        (1, "no original position in its headers"),
        (7, "original topic is not an ingress or delivery topic of this prefix"),
        (6, "original position is not a topic, partition and offset"),
        (1, "original topic does not exist"),
        (1, "original partition does not exist"),
        (1, "original record is gone (retention or compaction)"),
        (1, "original offset is beyond the end of its topic"),
    ]:
        assert f"{count} {why}" in summary
    # Only the genuine record the deletion left: nothing was published anywhere.
    assert [(r.topic, r.offset) for r in await _every_ingress(world)] == [(ingress, 2)]
