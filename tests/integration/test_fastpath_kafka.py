"""Attacks on the fast paths against a real broker: Publisher.publish_many's own record batches.

Each test holds the batched path to what aiokafka's per-record `send` gives: the same
partitions, keys, headers and offsets, per-key order, and one clear prik error.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from contracts import KafkaError, Message, Topics, parse
from deploy.topics import apply_topics
from prik.kafka import make_producer
from prik.partitioning import KeyPartitioner
from prik.settings import KafkaSettings
from prik.tenants import load_tenants
from producers import Publisher, partitions_of, read_records, video_queue_notice

from .test_producers_publisher import EXAMPLE

pytestmark = pytest.mark.kafka

TENANT = "minlaege-video"
CLINICS = [f"{400000000000 + i}" for i in range(12)]


def _notice(clinic: str, n: int, pad: int = 0) -> Message:
    url = f"https://video.example.dk/room/{n}" + ("?" + "x" * pad if pad else "")
    return video_queue_notice(TENANT, clinic, event="joined", queue_entry_id=f"q-{n}", consultation_url=url)


async def _stored(kafka: KafkaSettings, topic: str) -> dict[tuple[int, int], Any]:
    return {(r.partition, r.offset): r async for r in read_records(kafka, topic)}


async def _setup(kafka_bootstrap: str, topic_prefix: str) -> tuple[KafkaSettings, Topics, str]:
    kafka = KafkaSettings(bootstrap=kafka_bootstrap)
    topics = Topics(topic_prefix)
    await apply_topics(kafka, topics, load_tenants(EXAMPLE))
    return kafka, topics, topics.ingress(TENANT)


async def test_many_small_concurrent_publish_many_calls_all_land(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """The reported KafkaTimeoutError: hundreds of two-message calls queue on the same partitions."""
    kafka, topics, topic = await _setup(kafka_bootstrap, topic_prefix)
    calls = [[_notice(CLINICS[(i + j) % len(CLINICS)], 2 * i + j) for j in range(2)] for i in range(400)]
    async with Publisher(kafka, TENANT, topics) as pub:
        outcomes = await asyncio.gather(*(pub.publish_many(c) for c in calls), return_exceptions=True)
    failures = [type(o).__name__ + ": " + str(o) for o in outcomes if isinstance(o, BaseException)]
    assert failures == []
    stored = await _stored(kafka, topic)
    assert len(stored) == 2 * len(calls)
    for call, results in zip(calls, outcomes, strict=True):
        assert isinstance(results, list)
        for message, result in zip(call, results, strict=True):
            record = stored[(result.partition, result.offset)]
            assert parse(record.value, record.headers).id == message.id == result.message_id


async def test_batched_records_are_what_send_writes(kafka_bootstrap: str, topic_prefix: str) -> None:
    """Keys, headers and partitions of publish_many's batches equal those of publish's sends."""
    kafka, topics, topic = await _setup(kafka_bootstrap, topic_prefix)
    rng = random.Random(5)
    clinics = [str(rng.randrange(10**11, 10**12)) for _ in range(60)]
    # Valid messages stay far below the 64 KiB line (URLs up to 2 KiB); enough to fill several batches.
    pads = [0, 1, 1900] + [rng.randrange(0, 1900) for _ in range(800)]
    batched = [_notice(clinics[i % len(clinics)], i, pad) for i, pad in enumerate(pads)]
    sent = [_notice(clinics[i % len(clinics)], 10_000 + i, pad) for i, pad in enumerate(pads)]
    async with Publisher(kafka, TENANT, topics) as pub:
        many = await pub.publish_many(batched)
        one_by_one = [await pub.publish(m) for m in sent]
    stored = await _stored(kafka, topic)
    partitions = [tp.partition for tp in await partitions_of(kafka, topic)]
    default = DefaultPartitioner()
    for ours, theirs in zip(many, one_by_one, strict=True):
        a, b = stored[(ours.partition, ours.offset)], stored[(theirs.partition, theirs.offset)]
        assert parse(a.value, a.headers).id == ours.message_id
        assert parse(b.value, b.headers).id == theirs.message_id
        assert a.key == b.key
        assert a.headers == b.headers == (("content-type", b"application/cloudevents+json"),)
        assert ours.partition == theirs.partition == default(a.key, partitions, partitions)


async def test_per_key_order_across_mixed_concurrent_calls(kafka_bootstrap: str, topic_prefix: str) -> None:
    """Each clinic's lane alternates publish and publish_many; other lanes run at the same time."""
    kafka, topics, topic = await _setup(kafka_bootstrap, topic_prefix)
    sent: dict[str, list[str]] = {c: [] for c in CLINICS}

    async def lane(pub: Publisher, clinic: str, seed: int) -> None:
        rng = random.Random(seed)
        for n in range(15):
            batch = [
                _notice(clinic, 1000 * seed + 10 * n + j, rng.randrange(0, 2000))
                for j in range(rng.randrange(1, 5))
            ]
            if len(batch) == 1 and rng.random() < 0.5:
                await pub.publish(batch[0])
            else:
                await pub.publish_many(batch)
            sent[clinic] += [m.id for m in batch]

    async with Publisher(kafka, TENANT, topics) as pub:
        await asyncio.gather(*(lane(pub, c, i) for i, c in enumerate(CLINICS)))
    read: dict[str, list[str]] = {c: [] for c in CLINICS}
    async for record in read_records(kafka, topic):
        read[(record.key or b"").decode()].append(parse(record.value, record.headers).id)
    assert read == sent


async def test_cancelled_publish_many_leaves_the_publisher_working(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """A call cancelled mid-way: nothing else is lost, no stray errors, the next call works."""
    kafka, topics, topic = await _setup(kafka_bootstrap, topic_prefix)
    cancelled = 0
    async with Publisher(kafka, TENANT, topics) as pub:
        for n in range(20):
            victims = [_notice(CLINICS[i % len(CLINICS)], 100 * n + i, 1500) for i in range(300)]
            task = asyncio.create_task(pub.publish_many(victims))
            await asyncio.sleep(0.002 * (n % 5))
            if task.done():
                # A fast call can finish before the cancel comes: nothing was cut short.
                await task
                continue
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            cancelled += 1
        # Most calls are cut short somewhere along the way (the 0 ms ones always are).
        assert cancelled >= 4
        after = [_notice(c, 99_000 + i) for i, c in enumerate(CLINICS)]
        results = await pub.publish_many(after)
    stored = await _stored(kafka, topic)
    for message, result in zip(after, results, strict=True):
        record = stored[(result.partition, result.offset)]
        assert parse(record.value, record.headers).id == message.id


async def test_a_missing_topic_is_one_prik_error(kafka_bootstrap: str, topic_prefix: str) -> None:
    kafka = KafkaSettings(bootstrap=kafka_bootstrap)
    topics = Topics(topic_prefix)  # nothing applied: the ingress topic does not exist

    def factory(settings: KafkaSettings) -> AIOKafkaProducer:
        producer = make_producer(settings)
        # The metadata wait, shortened for the test.
        producer.client._request_timeout_ms = 3000
        return producer

    async with Publisher(kafka, TENANT, topics, producer_factory=factory) as pub:
        with pytest.raises(KafkaError) as caught:
            await pub.publish_many([_notice(c, i) for i, c in enumerate(CLINICS)])
    text = str(caught.value)
    assert "\n" not in text
    assert pub.topic in text


def _kcat(*args: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    kcat = shutil.which("kcat")
    assert kcat is not None, "kcat is not installed: run `make setup` (Debian's kcat)"
    return subprocess.run([kcat, *args], input=stdin, capture_output=True, timeout=60, check=False)


async def test_kcat_with_kafkas_partitioner_agrees_with_prik(kafka_bootstrap: str, topic_prefix: str) -> None:
    """librdkafka's default (CRC32) does not: a sender using kcat must ask for murmur2, as the guide says."""
    kafka, _topics, topic = await _setup(kafka_bootstrap, topic_prefix)
    rng = random.Random(9)
    keys = [str(rng.randrange(10**11, 10**12)) for _ in range(60)]
    lines = b"".join(f"{k}|{i}\n".encode() for i, k in enumerate(keys))
    done = _kcat(
        "-b", kafka_bootstrap, "-P", "-t", topic, "-K", "|", "-X", "partitioner=murmur2_random", stdin=lines
    )
    assert done.returncode == 0, done.stderr
    partitions = [tp.partition for tp in await partitions_of(kafka, topic)]
    ours = KeyPartitioner()
    landed = {(r.key or b"").decode(): r.partition async for r in read_records(kafka, topic)}
    assert landed == {k: ours(k.encode(), partitions, partitions) for k in keys}
    # And librdkafka's default partitioner puts most of these keys elsewhere.
    done = _kcat("-b", kafka_bootstrap, "-P", "-t", topic, "-K", "|", stdin=lines.replace(b"|", b"|d"))
    assert done.returncode == 0, done.stderr
    elsewhere = {
        (r.key or b"").decode()
        async for r in read_records(kafka, topic)
        if (r.value or b"").startswith(b"d") and r.partition != landed[(r.key or b"").decode()]
    }
    assert len(elsewhere) > len(keys) // 2


async def test_a_publisher_stopped_while_a_batch_waits_to_queue_does_not_hang_the_call(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    """aiokafka's add_batch does not look again whether the producer closed while it waited.

    A call whose next batch waits for the partition's queue when the producer stops (a stop
    during publishing, or a restart after a fatal error) must end, with its results or a prik
    error, not wait for an acknowledgement that never comes. On this broker aiokafka's sender
    usually still sends the late batch before it is cancelled, so this does not always meet
    the race; tests/unit/test_fastpath_attacks.py drives aiokafka's accumulator into it.
    """
    kafka, topics, _topic = await _setup(kafka_bootstrap, topic_prefix)
    clinic = CLINICS[0]  # one partition: every batch after the first waits for the one before
    notices = [_notice(clinic, i, 1900) for i in range(151)]  # two 256 KiB batches after the first
    async with Publisher(kafka, TENANT, topics) as pub:
        await pub.publish(notices[0])  # connected, metadata known
        call = asyncio.create_task(pub.publish_many(notices[1:]))
        await asyncio.sleep(0)  # its first batch queued, the second waiting for it to go
        # As the restart after a fatal error does: the producer taken away and stopped, unflushed.
        producer, pub._producer = pub._producer, None
        assert producer is not None
        await producer.stop()
        done, _ = await asyncio.wait([call], timeout=60)
        assert done, "publish_many waited for ever on a batch queued into a stopped producer"
        error = call.exception()
        assert error is None or isinstance(error, KafkaError)
