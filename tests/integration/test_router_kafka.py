"""The router on the real broker: from a sender to the right clinic's delivery topic."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Callable

import pytest

from contracts import Outcome, Receipt, TaskStatusUpdate, contains_cpr, parse, to_bytes
from contracts import headers as h
from deploy import free_port
from deploy.topics import apply_topics
from producers import Publisher, build
from producers.reading import partitions_of, read_records

from .conftest import CLINIC, OTHER_CLINIC, RouterProcess, World

pytestmark = pytest.mark.kafka
CPR = "0101901234"


async def test_prik_send_reaches_the_clinics_delivery_topic(
    world: World, routers: Callable[..., RouterProcess]
) -> None:
    metrics_port = free_port()
    router = routers("test", {"PRIK_METRICS_PORT": str(metrics_port)})
    sent = world.prik(
        "send",
        "video-queue",
        "--as",
        "minlaege-video",
        "--clinic",
        CLINIC,
        "--event",
        "joined",
        "--queue-entry",
        "q-42",
        "--cpr",
        CPR,
    )
    assert sent.returncode == 0, sent.stderr
    [message] = await world.wait_for(world.topics.deliver("lps-xmo"), 1)
    assert message is not None
    assert message.recipient == CLINIC
    assert message.source == "urn:prik:minlaege-video"
    assert message.id in sent.stdout
    scraped = await asyncio.to_thread(_get, f"http://127.0.0.1:{metrics_port}/metrics")
    routed = 'tenant="minlaege-video",type="dk.prik.advisory.video-queue.v1",verdict="routed"'
    assert f"prik_ingress_messages_total{{{routed}}} 1.0" in scraped
    assert "prik_router_last_commit_timestamp_seconds" in scraped
    assert "prik_lag_records{" in scraped
    assert CPR not in scraped
    assert router.terminate() == 0


async def test_refusals_are_dead_lettered_while_valid_traffic_flows(
    world: World, router: RouterProcess
) -> None:
    valid = [
        build.video_queue_notice("minlaege-video", CLINIC, event="joined", queue_entry_id=f"q-{i}", cpr=CPR)
        for i in range(20)
    ]
    unknown_clinic = build.video_queue_notice(
        "minlaege-video", "999999999999", event="joined", queue_entry_id="x"
    )
    not_allowed = build.task_request("minlaege-video", CLINIC, code="X")
    forged_source = build.video_queue_notice("kommune-0101", CLINIC, event="left", queue_entry_id="y")
    async with Publisher(world.kafka, "minlaege-video", world.topics) as publisher:
        for i, message in enumerate(valid):
            await publisher.publish(message)
            if i == 5:
                await publisher.publish(unknown_clinic)
            if i == 10:
                await publisher.publish(not_allowed)
    # Things the Publisher refuses to write, a sender may still write raw.
    from aiokafka import AIOKafkaProducer  # noqa: PLC0415 - raw writes are this test's business

    raw = AIOKafkaProducer(bootstrap_servers=world.kafka.bootstrap)
    await raw.start()
    try:
        ingress = world.topics.ingress("minlaege-video")
        await raw.send_and_wait(ingress, b"{broken", key=CLINIC.encode())
        await raw.send_and_wait(ingress, to_bytes(forged_source), key=CLINIC.encode())
    finally:
        await raw.stop()

    dead = await world.wait_for(world.topics.dlq, 4)
    delivered = await world.wait_for(world.topics.deliver("lps-xmo"), len(valid))
    assert sorted(m.id for m in delivered if m) == sorted(m.id for m in valid)
    stages = Counter(headers[h.ERROR_STAGE].decode() for _, _, headers in await world.read(world.topics.dlq))
    assert stages == Counter({"route": 1, "authorise": 1, "parse": 1, "authenticate": 1})
    for _, _, headers in await world.read(world.topics.dlq):
        assert headers[h.ERROR_REASON]
        assert headers[h.ORIGINAL_TOPIC] == world.topics.ingress("minlaege-video").encode()
        assert not contains_cpr(headers[h.ERROR_REASON].decode())
    assert len(dead) == 4
    receipts = [
        m for m in await world.wait_for(world.topics.replies("minlaege-video"), 4) if isinstance(m, Receipt)
    ]
    assert Counter(r.data.outcome for r in receipts) == Counter({Outcome.REJECTED: 4})


async def test_task_round_trip_and_refused_parties(world: World, router: RouterProcess) -> None:
    request = build.task_request("kommune-0101", CLINIC, code="KOL-TELE", cpr=CPR)
    task_id = request.data.task_id
    async with Publisher(world.kafka, "kommune-0101", world.topics) as kommune:
        await kommune.publish(request)
    [delivered] = await world.wait_for(world.topics.deliver("lps-xmo"), 1)
    assert delivered == request

    # A foreign LPS tries to move the task, and forges a receipt for the kommune.
    async with Publisher(world.kafka, "lps-other", world.topics) as other:
        await other.publish(build.task_status("lps-other", task_id, "accepted"))
        await other.publish(
            build.receipt(
                "lps-other",
                message_id=request.id,
                message_source=request.source,
                message_type=request.type,
                outcome="delivered",
                recipient=CLINIC,
            )
        )
    # The clinic's LPS answers through the CLI, as an operator would.
    for status in ("received", "accepted", "in-progress", "completed"):
        answered = world.prik("task", "status", str(task_id), "--as", "lps-xmo", "--status", status)
        assert answered.returncode == 0, answered.stderr

    replies = await world.wait_for(world.topics.replies("kommune-0101"), 4)
    statuses = [m.data.status for m in replies if isinstance(m, TaskStatusUpdate)]
    assert statuses == ["received", "accepted", "in-progress", "completed"]
    assert not [m for m in replies if isinstance(m, Receipt)]  # the forged receipt never arrived
    stages = Counter(headers[h.ERROR_STAGE].decode() for _, _, headers in await world.read(world.topics.dlq))
    # The forged receipt carries no valid prik-route token: refused as not authorised.
    assert stages == Counter({"authorise": 2})
    other_replies = await world.wait_for(world.topics.replies("lps-other"), 1)
    assert [m.data.outcome for m in other_replies if isinstance(m, Receipt)] == [Outcome.REJECTED]


async def test_sigkill_mid_stream_routes_every_message_exactly_once(
    world: World, routers: Callable[..., RouterProcess]
) -> None:
    total = 5000
    messages = [
        build.video_queue_notice(
            "minlaege-video", CLINIC if i % 2 else OTHER_CLINIC, event="joined", queue_entry_id=f"q-{i}"
        )
        for i in range(total)
    ]
    deliver = [world.topics.deliver("lps-xmo"), world.topics.deliver("lps-other")]
    router = routers("crash")
    async with Publisher(world.kafka, "minlaege-video", world.topics) as publisher:
        for start in range(0, total, 250):
            await publisher.publish_many(messages[start : start + 250])
            if start == 2500:
                # Mid-stream: half is still to come, and the router is at work on the rest.
                await _wait_for_any(world, deliver)
                router.kill()
    routed_before_kill = await _count(world, deliver)
    assert 0 < routed_before_kill < total, "the kill must land mid-stream"

    started = time.monotonic()
    restarted = routers("crash")
    ids: list[str] = []
    while time.monotonic() - started < 120:
        ids = await _ids(world, deliver)
        if len(ids) >= total:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(2)  # anything extra would show up now
    ids = await _ids(world, deliver)
    assert restarted.terminate() == 0
    counts = Counter(ids)
    assert len(counts) == total, f"{total - len(counts)} lost"
    assert max(counts.values()) == 1, "duplicates routed"


async def test_kcat_interoperates_both_ways(world: World, router: RouterProcess) -> None:
    message = build.video_queue_notice("minlaege-video", CLINIC, event="called", queue_entry_id="kcat-1")
    produced = subprocess.run(
        [
            "kcat",
            "-P",
            "-b",
            world.kafka.bootstrap,
            "-t",
            world.topics.ingress("minlaege-video"),
            "-k",
            CLINIC,
            "-H",
            "content-type=application/cloudevents+json",
        ],
        input=to_bytes(message),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert produced.returncode == 0, produced.stderr
    [routed] = await world.wait_for(world.topics.deliver("lps-xmo"), 1)
    assert routed == message

    read = subprocess.run(
        [
            "kcat",
            "-C",
            "-b",
            world.kafka.bootstrap,
            "-t",
            world.topics.deliver("lps-xmo"),
            "-e",
            "-J",
            "-X",
            "isolation.level=read_committed",
        ],
        capture_output=True,
        timeout=30,
        check=False,
        text=True,
    )
    assert read.returncode == 0, read.stderr
    [line] = [json.loads(x) for x in read.stdout.splitlines() if x.startswith("{")]
    assert line["key"] == CLINIC
    assert parse(line["payload"].encode()) == message


async def _ids(world: World, topics: list[str]) -> list[str]:
    ids: list[str] = []
    for topic in topics:
        ids.extend(m.id for _, m, _ in await world.read(topic) if m is not None)
    return ids


async def _count(world: World, topics: list[str]) -> int:
    return len(await _ids(world, topics))


async def test_dlq_list_and_replay_after_fixing_the_directory(world: World, router: RouterProcess) -> None:
    late_clinic = "333456789012"
    lost = build.video_queue_notice(
        "minlaege-video", late_clinic, event="joined", queue_entry_id="q", cpr=CPR
    )
    async with Publisher(world.kafka, "minlaege-video", world.topics) as publisher:
        await publisher.publish(lost)
    await world.wait_for(world.topics.dlq, 1)

    listed = world.prik("dlq", "list")
    assert listed.returncode == 0, listed.stderr
    assert "route" in listed.stdout
    assert lost.id in listed.stdout
    assert CPR not in listed.stdout

    from contracts import DirectoryEntry  # noqa: PLC0415 - the fix an operator would make
    from deploy.directory import load_directory  # noqa: PLC0415 - as above

    await load_directory(world.kafka, world.topics, [DirectoryEntry(sor=late_clinic, lps="lps-other")])
    replayed = world.prik("dlq", "replay", "--all")
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed 1" in replayed.stdout
    [routed] = await world.wait_for(world.topics.deliver("lps-other"), 1)
    assert routed == lost
    # --all remembers how far it got: a second run sends nothing again.
    again = world.prik("dlq", "replay", "--all")
    assert again.returncode == 0, again.stderr
    assert "nothing left to replay" in again.stdout
    # --id always sends what it names.
    by_id = world.prik("dlq", "replay", "--id", lost.id)
    assert "replayed 1" in by_id.stdout
    assert len(await world.wait_for(world.topics.deliver("lps-other"), 2)) == 2
    assert world.prik("dlq", "replay", "--id", "no-such-id").returncode == 1


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - a loopback URL the test built
        body: bytes = response.read()
        return body.decode()


async def test_a_record_kafka_refuses_to_dead_letter_does_not_stall_the_router(
    world: World, router: RouterProcess
) -> None:
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType  # noqa: PLC0415 - this test only

    from prik.kafka import admin_client  # noqa: PLC0415 - this test only

    # The dead-letter topic takes small records only: the garbage's dead letter cannot fit.
    async with admin_client(world.kafka) as admin:
        await admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC, world.topics.dlq, configs={"max.message.bytes": "4000"}
                )
            ]
        )
    before = [
        build.video_queue_notice("minlaege-video", CLINIC, event="joined", queue_entry_id=f"a{i}")
        for i in range(5)
    ]
    after = [
        build.video_queue_notice("minlaege-video", CLINIC, event="left", queue_entry_id=f"b{i}")
        for i in range(5)
    ]
    from aiokafka import AIOKafkaProducer  # noqa: PLC0415 - a sender that skips validation

    raw = AIOKafkaProducer(bootstrap_servers=world.kafka.bootstrap, enable_idempotence=True)
    await raw.start()
    try:
        ingress = world.topics.ingress("minlaege-video")
        for message in before:
            await raw.send_and_wait(ingress, to_bytes(message), key=CLINIC.encode())
        await raw.send_and_wait(ingress, b"x" * 20_000, key=CLINIC.encode())
        for message in after:
            await raw.send_and_wait(ingress, to_bytes(message), key=CLINIC.encode())
    finally:
        await raw.stop()

    delivered = await world.wait_for(world.topics.deliver("lps-xmo"), 10, timeout=90)
    assert sorted(m.id for m in delivered if m) == sorted(m.id for m in before + after)
    dead = [record async for record in read_records(world.kafka, world.topics.dlq)]
    [record] = dead
    headers = dict(record.headers)
    assert record.value == b""  # the original stays where it was: only its position travels
    assert headers[h.ERROR_STAGE] == b"route"
    assert b"MessageSizeTooLarge" in headers[h.ERROR_REASON]
    assert router.terminate() == 0


async def test_a_resend_after_a_router_restart_is_still_a_duplicate(
    world: World, routers: Callable[..., RouterProcess]
) -> None:
    first = routers("restart")
    message = build.video_queue_notice("minlaege-video", CLINIC, event="joined", queue_entry_id="dup")
    async with Publisher(world.kafka, "minlaege-video", world.topics) as publisher:
        await publisher.publish(message)
        await world.wait_for(world.topics.deliver("lps-xmo"), 1)
        assert first.terminate() == 0

        second = routers("restart")
        assert b"router.dedup_rebuilt" in second.output()
        # The same message again, then a new one behind it on the same partition (same key).
        await publisher.publish(message)
        marker = build.video_queue_notice("minlaege-video", CLINIC, event="left", queue_entry_id="dup")
        await publisher.publish(marker)
    delivered = await world.wait_for(world.topics.deliver("lps-xmo"), 2)
    await asyncio.sleep(1)
    delivered = [m for _, m, _ in await world.read(world.topics.deliver("lps-xmo"))]
    assert [m.id for m in delivered if m] == [message.id, marker.id]
    assert second.terminate() == 0


async def _wait_for_any(world: World, topics: list[str], within: float = 60) -> None:
    """Until anything is committed on `topics`: end offsets only, no reading or parsing."""
    from aiokafka import TopicPartition  # noqa: PLC0415 - this helper only

    from prik.kafka import make_consumer  # noqa: PLC0415 - this helper only

    partitions = [tp for t in topics for tp in await partitions_of(world.kafka, t)]
    consumer = make_consumer(world.kafka, group_id=None)
    await consumer.start()
    try:
        consumer.assign(partitions)
        deadline = time.monotonic() + within
        ends: dict[TopicPartition, int] = {}
        while not any(ends.values()) and time.monotonic() < deadline:
            ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


async def test_a_header_name_aiokafka_cannot_decode_does_not_stop_the_router(
    world: World, router: RouterProcess
) -> None:
    """librdkafka (kcat) writes header names that are not UTF-8; aiokafka then fails on the whole fetch.

    Two such records share one producer batch, so each must still get its own
    outcome; what comes before and after is routed as usual.
    """
    ingress = world.topics.ingress("minlaege-video")
    before = build.video_queue_notice("minlaege-video", CLINIC, event="joined", queue_entry_id="b-1")
    poisons = [
        build.video_queue_notice("minlaege-video", CLINIC, event="left", queue_entry_id=f"p-{i}", cpr=CPR)
        for i in range(2)
    ]
    after = build.video_queue_notice("minlaege-video", CLINIC, event="called", queue_entry_id="a-1")

    def kcat(values: list[bytes], *headers: bytes) -> None:
        done = subprocess.run(
            ["kcat", "-b", world.kafka.bootstrap, "-P", "-t", ingress, "-k", CLINIC, *headers],
            input=b"\n".join(values) + b"\n",
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr

    # aiokafka's partitioner puts these elsewhere than kcat's: the failed fetch drains
    # other partitions too, and their records must not be lost with it.
    elsewhere = [
        build.video_queue_notice("minlaege-video", CLINIC, event="joined", queue_entry_id=f"e-{i}")
        for i in range(6)
    ]
    async with Publisher(world.kafka, "minlaege-video", world.topics) as publisher:
        for message in elsewhere:
            await publisher.publish(message)
    kcat([to_bytes(before)])
    kcat([to_bytes(m) for m in poisons], b"-H", b"bad-\xff-name=x")
    kcat([to_bytes(after)])

    delivered = await world.wait_for(world.topics.deliver("lps-xmo"), 2 + len(elsewhere))
    assert sorted(m.id for m in delivered if m) == sorted([before.id, after.id, *(m.id for m in elsewhere)])
    deadline = time.monotonic() + 60
    while len(letters := [headers for _, _, headers in await world.read(world.topics.dlq)]) < 2:
        assert time.monotonic() < deadline, "the undecodable records were not dead-lettered"
        await asyncio.sleep(0.3)
    assert len(letters) == 2
    for letter in letters:
        assert letter[h.ERROR_STAGE] == b"parse"
        assert letter[h.ERROR_REASON] == b"a header name is not valid UTF-8"
    assert len({letter[h.ORIGINAL_OFFSET] for letter in letters}) == 2
    assert router.process is not None
    assert router.process.poll() is None
    assert CPR.encode() not in router.output()


async def test_the_router_refuses_to_start_without_its_dead_letter_or_tasks_topic(world: World) -> None:
    from prik.kafka import admin_client  # noqa: PLC0415 - only this test removes topics

    for topic in (world.topics.dlq, world.topics.tasks):
        async with admin_client(world.kafka) as admin:
            await admin.delete_topics([topic])
        done = world.prik("broker", "run", "--instance", "no-topic", timeout=120)
        assert done.returncode == 1, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last == f"prik: error: topic {topic} does not exist (run `prik topics apply`)"
        await apply_topics(world.kafka, world.topics, world.tenants)
