"""The clinic-side consumer on a real broker, delivering to the reference LPS.

Messages are put straight onto the delivery topic (the router is not needed to
test delivery); receipts and dead letters are read back from Kafka.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka.admin import NewTopic
from standardwebhooks.webhooks import Webhook

from consumers import (
    Backoff,
    ClinicConsumer,
    ReferenceLps,
    WebhookDeliverer,
    generate_secret,
    make_webhook,
    sign_headers,
)
from contracts import Message, Outcome, Receipt, TaskStatusUpdate, parse, to_bytes
from contracts.headers import ERROR_REASON, ERROR_STAGE, ORIGINAL_OFFSET, ORIGINAL_PARTITION, ORIGINAL_TOPIC
from contracts.topics import Topics
from prik.kafka import admin_client, make_producer
from prik.settings import KafkaSettings
from producers import read_records, receipt, referral_status_notice, task_request, video_queue_notice

pytestmark = pytest.mark.kafka

LPS = "lps-test"
SENDER = "minlaege-video"
CPR = "0101701234"
CLINICS = [f"1000000000{i:02d}" for i in range(21)]


@dataclass
class Env:
    kafka: KafkaSettings
    topics: Topics

    async def produce(self, *messages: Message, partition: int | None = None) -> None:
        producer = make_producer(self.kafka)
        await producer.start()
        try:
            for message in messages:
                await producer.send_and_wait(
                    self.topics.deliver(LPS),
                    value=to_bytes(message),
                    key=(message.recipient or "").encode(),
                    partition=partition,
                )
        finally:
            await producer.stop()

    async def produce_raw(self, key: bytes, value: bytes) -> None:
        producer = make_producer(self.kafka)
        await producer.start()
        try:
            await producer.send_and_wait(self.topics.deliver(LPS), value=value, key=key)
        finally:
            await producer.stop()

    async def records(self, topic: str) -> list[Any]:
        return [record async for record in read_records(self.kafka, topic)]

    async def receipts(self, count: int, within: float = 60) -> list[tuple[bytes, Receipt]]:
        deadline = time.monotonic() + within
        while True:
            got = []
            for record in await self.records(self.topics.ingress(LPS)):
                message = parse(record.value, record.headers)
                if isinstance(message, Receipt):
                    got.append((record.key, message))
            if len(got) >= count or time.monotonic() > deadline:
                return got
            await asyncio.sleep(0.3)

    async def dead_letters(self, count: int, within: float = 60) -> list[Any]:
        deadline = time.monotonic() + within
        while True:
            got = await self.records(self.topics.dlq)
            if len(got) >= count or time.monotonic() > deadline:
                return got
            await asyncio.sleep(0.3)

    def consumer(self, lps: ReferenceLps, **options: Any) -> ClinicConsumer:
        options.setdefault("backoff", Backoff(base=0.2, cap=1.0))
        options.setdefault("stop_grace", 2.0)
        return ClinicConsumer(
            self.kafka, self.topics, LPS, WebhookDeliverer(lps.url, lps.secret, total_timeout=5), **options
        )


@pytest.fixture
async def env(kafka_bootstrap: str, topic_prefix: str) -> Env:
    kafka = KafkaSettings(bootstrap=kafka_bootstrap)
    topics = Topics(topic_prefix)
    async with admin_client(kafka) as admin:
        await admin.create_topics(
            [
                NewTopic(topics.deliver(LPS), num_partitions=6, replication_factor=1),
                NewTopic(topics.ingress(LPS), num_partitions=3, replication_factor=1),
                NewTopic(topics.dlq, num_partitions=1, replication_factor=1),
            ]
        )
    return Env(kafka, topics)


async def wait_until(condition: Callable[[], bool], within: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def started(consumer: ClinicConsumer) -> ClinicConsumer:
    await consumer.start()
    await wait_until(lambda: len(consumer.assignment) == 6, what="partitions assigned")
    return consumer


def notice(clinic: str, **kwargs: Any) -> Message:
    return video_queue_notice(SENDER, clinic, event="joined", queue_entry_id="q-1", cpr=CPR, **kwargs)


async def test_deliveries_are_signed_and_receipted(env: Env) -> None:
    messages = [notice(clinic) for clinic in CLINICS[:3] for _ in range(3)]
    stray = receipt(
        LPS, message_id="x-1", message_source="urn:prik:other", message_type="t", outcome="delivered"
    )
    await env.produce(*messages)
    await env.produce_raw(CLINICS[0].encode(), to_bytes(stray))
    async with ReferenceLps() as lps, env.consumer(lps) as consumer:
        await lps.wait_for(len(messages))
        receipts = await env.receipts(len(messages))
        await wait_until(lambda: consumer.stats.skipped == 1, what="the stray receipt skipped")
    by_id = {m.id: m for m in messages}
    assert sorted(lps.ids()) == sorted(by_id)
    verifier = Webhook(lps.secret)
    for got in lps.received:
        # Signed the Standard Webhooks way, webhook-id = envelope id, body = the bytes on Kafka.
        assert verifier.verify(got.body, got.headers)["id"] == got.message_id
        assert got.webhook_id == got.message_id
        assert got.body == to_bytes(by_id[got.message_id])
    assert len(receipts) == len(messages)  # none for the stray receipt
    for key, rec in receipts:
        original = by_id[rec.data.message_id]
        assert key == original.id.encode()
        assert rec.source == f"urn:prik:{LPS}"
        assert rec.data.outcome is Outcome.DELIVERED
        assert rec.data.message_source == original.source
        assert rec.data.message_type == original.type
        assert rec.data.recipient == original.recipient
        assert rec.data.attempts == 1
    assert consumer.stats.delivered == len(messages)


async def test_expired_messages_are_never_delivered(env: Env) -> None:
    clinic, failing = CLINICS[0], CLINICS[1]
    stale = notice(clinic).model_copy(update={"time": datetime.now(UTC) - timedelta(minutes=20)})
    short = referral_status_notice(
        "kommune-0101",
        clinic,
        referral_id="r-1",
        municipality_code="101",
        offer="TeleKOL",
        status="accepted",
        cpr=CPR,
        expires_in=timedelta(milliseconds=1),
    )
    live = notice(clinic)
    # Expires while its clinic's endpoint fails: retried until then, never after.
    retried = notice(failing, expires_in=timedelta(seconds=3))
    await asyncio.sleep(0.05)
    async with ReferenceLps() as lps:
        lps.fail_clinic(failing, status=503, for_seconds=60)
        await env.produce(stale, short, live, retried)
        async with env.consumer(lps):
            receipts = {r.data.message_id: r for _, r in await env.receipts(4)}
    assert lps.ids() == {live.id}
    assert receipts[live.id].data.outcome is Outcome.DELIVERED
    for expired in (stale, short):
        assert receipts[expired.id].data.outcome is Outcome.EXPIRED
        assert receipts[expired.id].data.attempts == 0
    assert receipts[retried.id].data.outcome is Outcome.EXPIRED
    assert receipts[retried.id].data.attempts >= 2
    assert lps.answers[(failing, 503)] == receipts[retried.id].data.attempts
    assert await env.records(env.topics.dlq) == []


async def test_failing_clinic_holds_back_no_other_and_keeps_its_order(env: Env) -> None:
    failing, others = CLINICS[0], CLINICS[1:]
    async with ReferenceLps() as lps, await started(env.consumer(lps)) as consumer:
        warm = notice(others[0])
        await env.produce(warm)
        await lps.wait_for(1)
        lps.fail_clinic(failing, status=503, for_seconds=10)
        failing_messages = [notice(failing) for _ in range(10)]
        other_messages = [notice(clinic) for clinic in others for _ in range(3)]
        await env.produce(*failing_messages[:5], *other_messages, *failing_messages[5:])
        await lps.wait_for(1 + len(failing_messages) + len(other_messages), timeout=90)
        assert consumer.stats.retries > 0
    sent = {m.id: m.time for m in (*failing_messages, *other_messages)}

    def latencies(clinics: set[str]) -> list[float]:
        return [
            (got.received_at - sent[got.message_id]).total_seconds()
            for got in lps.received
            if got.clinic in clinics and got.message_id in sent
        ]

    failing_latency = latencies({failing})
    other_latency = latencies(set(others))
    assert min(failing_latency) >= 9  # it really was held for its ~10 s outage
    # Everyone else went through while it failed: far quicker than the failing clinic.
    assert max(other_latency) < min(failing_latency) / 2
    assert [got.message_id for got in lps.for_clinic(failing)] == [m.id for m in failing_messages]
    for clinic in others:
        expected = [m.id for m in other_messages if m.recipient == clinic]
        got_ids = [got.message_id for got in lps.for_clinic(clinic) if got.message_id != warm.id]
        assert got_ids == expected
    assert lps.answers[(failing, 503)] >= 2


async def test_a_failing_clinic_does_not_pause_its_partition_for_the_others(env: Env) -> None:
    failing, others = CLINICS[0], CLINICS[1:5]
    failing_messages = [notice(failing) for _ in range(40)]
    other_messages = [notice(clinic) for _ in range(5) for clinic in others]
    async with ReferenceLps() as lps:
        lps.fail_clinic(failing, status=503, for_seconds=12)
        options: dict[str, Any] = {"max_buffered_per_partition": 20, "max_buffered_per_clinic": 5}
        async with await started(env.consumer(lps, **options)) as consumer:
            # Everything on one partition: the failing clinic's records first, more than a lane holds.
            await env.produce(*failing_messages, partition=0)
            await wait_until(lambda: consumer.stats.deferred >= 1, what="the failing clinic deferred")
            await env.produce(*other_messages, partition=0)
            await lps.wait_for(len(other_messages), timeout=60)
            assert lps.for_clinic(failing) == []  # the others finished while it still failed
            assert consumer.stats.paused_partitions == 0
            assert consumer.stats.in_flight[failing] <= 5  # the lane's bound, not 40
            await lps.wait_for(len(failing_messages) + len(other_messages), timeout=90)
            await wait_until(lambda: consumer.stats.receipts == len(lps.received), what="receipts")
        assert consumer.stats.refetches >= 1
    sent = {m.id: m.time for m in (*failing_messages, *other_messages)}

    def latencies(clinics: set[str]) -> list[float]:
        return [
            (got.received_at - sent[got.message_id]).total_seconds()
            for got in lps.received
            if got.clinic in clinics
        ]

    # Before the lane bound, the failing clinic filled the partition and paused it for all:
    # the others would have waited out its ~12 s outage too.
    assert max(latencies(set(others))) < min(latencies({failing})) / 2
    # Its deferred records were read again from Kafka: all there, in order, none twice.
    assert [got.message_id for got in lps.for_clinic(failing)] == [m.id for m in failing_messages]
    assert lps.duplicates == 0
    for clinic in others:
        assert [got.message_id for got in lps.for_clinic(clinic)] == [
            m.id for m in other_messages if m.recipient == clinic
        ]
    # And the group's offset moved past all of them: a new consumer finds nothing to deliver.
    async with ReferenceLps() as fresh, await started(env.consumer(fresh)) as again:
        await asyncio.sleep(2)
        assert again.stats.consumed == 0


async def test_retry_after_is_honoured(env: Env) -> None:
    clinic = CLINICS[0]
    async with ReferenceLps() as lps:
        lps.fail_clinic(clinic, status=429, for_seconds=0.5, retry_after=2)
        await env.produce(notice(clinic))
        async with env.consumer(lps):
            await lps.wait_for(1)
    refused = [at for _, status, at in lps.attempts if status == 429]
    accepted = [at for _, status, at in lps.attempts if status == 200]
    assert len(refused) == 1  # the backoff alone (at most 1 s) would have tried again sooner
    assert accepted[0] - refused[0] >= 1.9


async def test_bad_request_and_unreadable_are_dead_lettered_at_once(env: Env) -> None:
    bad = CLINICS[1]
    to_bad = notice(bad)
    async with ReferenceLps() as lps:
        lps.fail_clinic(bad, status=400, for_seconds=600)
        await env.produce(to_bad)
        await env.produce_raw(CLINICS[2].encode(), b"not json")
        began = time.monotonic()
        async with env.consumer(lps, max_retry_time=3600):
            receipts = {r.data.message_id: r for _, r in await env.receipts(1)}
            dead = await env.dead_letters(2)
        took = time.monotonic() - began
    assert took < 60  # at once, not after the hour of retries
    assert lps.answers[(bad, 400)] == 1
    rec = receipts[to_bad.id].data
    assert rec.outcome is Outcome.DEAD_LETTERED
    assert rec.attempts == 1
    assert rec.reason is not None
    assert "400" in rec.reason
    by_key = {record.key: record for record in dead}
    record = by_key[bad.encode()]
    headers = dict(record.headers)
    assert record.value == to_bytes(to_bad)
    assert headers[ERROR_STAGE] == b"deliver"
    assert b"400" in headers[ERROR_REASON]
    assert CPR.encode() not in headers[ERROR_REASON]
    assert headers[ORIGINAL_TOPIC] == env.topics.deliver(LPS).encode()
    assert int(headers[ORIGINAL_PARTITION]) in range(6)
    assert int(headers[ORIGINAL_OFFSET]) >= 0
    unreadable = dict(by_key[CLINICS[2].encode()].headers)
    assert unreadable[ERROR_STAGE] == b"parse"
    assert by_key[CLINICS[2].encode()].value == b"not json"


async def test_410_disables_the_endpoint_and_dead_letters_what_follows(env: Env) -> None:
    gone, waiting, later = CLINICS[0], CLINICS[1], CLINICS[2:6]
    to_waiting, to_gone = notice(waiting), notice(gone)
    after = [notice(clinic) for clinic in later for _ in range(2)]
    async with (
        ReferenceLps() as lps,
        await started(env.consumer(lps, http_port=0, max_retry_time=3600)) as consumer,
        aiohttp.ClientSession() as http,
    ):
        health_url = f"http://127.0.0.1:{consumer.http_port}/health"
        # One clinic's message waits out a long Retry-After when the endpoint goes away.
        lps.fail_clinic(waiting, status=503, for_seconds=600, retry_after=120)
        await env.produce(to_waiting)
        await wait_until(lambda: lps.answers[(waiting, 503)] == 1, what="the first 503")
        lps.fail_clinic(gone, status=410, for_seconds=600)
        began = time.monotonic()
        await env.produce(to_gone)
        await wait_until(lambda: consumer.endpoint_disabled, what="the endpoint disabled")
        async with http.get(health_url) as response:
            assert response.status == 503
            health = await response.json()
        await env.produce(*after)  # clinics whose endpoint would have answered 200
        receipts = {r.data.message_id: r.data for _, r in await env.receipts(2 + len(after))}
        dead = await env.dead_letters(2 + len(after))
        took = time.monotonic() - began
    assert health["healthy"] is False
    assert health["endpoint"] == "disabled"
    assert "410" in health["reason"]
    # Not one POST after the 410: the waiting message was not retried, the later ones never sent.
    assert sum(lps.answers.values()) == 2
    assert lps.received == []
    assert took < 60  # the waiting message did not sit out its 120 s Retry-After
    assert set(receipts) == {m.id for m in (to_waiting, to_gone, *after)}
    for message in (to_waiting, to_gone, *after):
        rec = receipts[message.id]
        assert rec.outcome is Outcome.DEAD_LETTERED
        assert rec.reason == "endpoint gone (410)"
    assert receipts[to_gone.id].attempts == 1
    assert receipts[to_waiting.id].attempts == 1
    assert all(receipts[m.id].attempts == 0 for m in after)
    # Nothing is lost: every original record is in the dead-letter topic for a replay.
    assert sorted(record.value for record in dead) == sorted(
        to_bytes(m) for m in (to_waiting, to_gone, *after)
    )
    assert {dict(record.headers)[ERROR_REASON] for record in dead} == {b"endpoint gone (410)"}


async def test_gives_up_after_max_retry_time(env: Env) -> None:
    clinic = CLINICS[0]
    message = notice(clinic)
    async with ReferenceLps() as lps:
        lps.fail_clinic(clinic, status=503, for_seconds=600)
        await env.produce(message)
        async with env.consumer(lps, max_retry_time=2):
            ((_, rec),) = await env.receipts(1)
            (dead,) = await env.dead_letters(1)
    assert rec.data.outcome is Outcome.DEAD_LETTERED
    assert rec.data.attempts >= 2
    assert rec.data.reason is not None
    assert "gave up" in rec.data.reason
    assert dead.value == to_bytes(message)
    assert b"gave up" in dict(dead.headers)[ERROR_REASON]


async def test_backpressure_pauses_and_resumes_without_losing_order(env: Env) -> None:
    clinic = CLINICS[0]
    messages = [notice(clinic) for _ in range(20)]
    paused_seen = False
    async with ReferenceLps() as lps:
        lps.fail_clinic(clinic, status=503, for_seconds=3)
        await env.produce(*messages)
        # A lane as large as the partition's bound: the partition pauses, and resumes in order.
        options: dict[str, Any] = {"max_buffered_per_partition": 3, "max_buffered_per_clinic": 3}
        async with env.consumer(lps, **options) as consumer:
            deadline = time.monotonic() + 60
            while len(lps.received) < len(messages) and time.monotonic() < deadline:
                paused_seen = paused_seen or consumer.stats.paused_partitions > 0
                await asyncio.sleep(0.05)
            await wait_until(lambda: consumer.stats.paused_partitions == 0, what="resumed")
    assert paused_seen
    assert [got.message_id for got in lps.received] == [m.id for m in messages]


async def test_task_status_endpoint_and_api_publish_task_statuses(env: Env) -> None:
    task = task_request("kommune-0101", CLINICS[0], code="KOL-1", cpr=CPR)
    task_id = str(task.data.task_id)
    async with (
        ReferenceLps() as lps,
        await started(env.consumer(lps, http_port=0)) as consumer,
        aiohttp.ClientSession() as http,
    ):
        await env.produce(task)
        await lps.wait_for(1)
        base = f"http://127.0.0.1:{consumer.http_port}"
        url = f"{base}/tasks/{task_id}/status"
        body = f'{{"task_id": "{task_id}", "status": "received"}}'.encode()
        forged = sign_headers(make_webhook(generate_secret()), "req-0", body)
        async with http.post(url, data=body, headers=forged) as response:
            assert response.status == 401
        signed = sign_headers(make_webhook(lps.secret), "req-1", body)
        async with http.post(url, data=body, headers=signed) as response:
            assert response.status == 202
        bad = f'{{"task_id": "{task_id}", "status": "done-ish"}}'.encode()
        async with http.post(
            url, data=bad, headers=sign_headers(make_webhook(lps.secret), "r", bad)
        ) as response:
            assert response.status == 400
            assert "status" in (await response.json())["error"]
        await consumer.answer_task(uuid.UUID(task_id), "accepted", "we are on it")
        async with http.get(f"{base}/health") as response:
            assert response.status == 200
    statuses = [
        (record.key, message)
        for record in await env.records(env.topics.ingress(LPS))
        if isinstance(message := parse(record.value, record.headers), TaskStatusUpdate)
    ]
    assert [(key, m.data.status.value) for key, m in statuses] == [
        (task_id.encode(), "received"),
        (task_id.encode(), "accepted"),
    ]
    assert all(m.source == f"urn:prik:{LPS}" for _, m in statuses)
    assert statuses[1][1].data.reason == "we are on it"


def _spawn_cli(env: Env, lps: ReferenceLps, log: Path) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,
        "PRIK_KAFKA__BOOTSTRAP": env.kafka.bootstrap,
        "PRIK_TOPIC_PREFIX": env.topics.prefix,
    }
    args = ["consumer", "run", "--lps", LPS, "--webhook", lps.url, "--secret", lps.secret]
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "prik", *args, "--max-retry-time", "120"],
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def test_killed_consumer_loses_nothing_and_duplicates_keep_their_id(env: Env, tmp_path: Path) -> None:
    clinics = CLINICS[:6]
    messages = [notice(clinic) for _ in range(10) for clinic in clinics]
    log = tmp_path / "consumer.log"
    async with ReferenceLps() as lps:
        for clinic in clinics:
            # A slow LPS, so the kill lands while deliveries are in flight.
            lps.fail_clinic(clinic, status=200, delay=0.15, for_seconds=600)
        await env.produce(*messages)
        first = _spawn_cli(env, lps, log)
        try:
            await wait_until(lambda: len(lps.received) >= 15, within=90, what="first deliveries")
        finally:
            first.send_signal(signal.SIGKILL)
            await asyncio.to_thread(first.wait, 30)
        assert len(lps.received) < len(messages)
        second = _spawn_cli(env, lps, log)
        try:
            await lps.wait_for(len(messages), timeout=120)
            receipts = await env.receipts(len(messages))
        finally:
            second.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(second.wait, 60)
    assert code == 0, log.read_text()[-3000:]
    # Nothing lost; a redelivery under a new webhook-id would show up here as a second copy.
    assert sorted(got.message_id for got in lps.received) == sorted(m.id for m in messages)
    assert all(got.webhook_id == got.message_id for got in lps.received)
    for clinic in clinics:
        expected = [m.id for m in messages if m.recipient == clinic]
        assert [got.message_id for got in lps.for_clinic(clinic)] == expected
    # Every message has its delivered receipt; a repeated receipt repeats its id, so the router drops it.
    outcomes: dict[str, set[str]] = {}
    for _, rec in receipts:
        assert rec.data.outcome is Outcome.DELIVERED
        outcomes.setdefault(rec.data.message_id, set()).add(rec.id)
    assert set(outcomes) == {m.id for m in messages}
    assert all(len(ids) == 1 for ids in outcomes.values())


async def test_records_aiokafka_cannot_decode_or_with_null_headers_do_not_stop_the_consumer(env: Env) -> None:
    """kcat writes a header name that is not UTF-8 (aiokafka then fails the fetch); others send nulls."""
    clinic = CLINICS[3]
    before, after, nulled = notice(clinic), notice(clinic), notice(clinic)
    poison = notice(clinic)
    await env.produce(before)
    done = subprocess.run(
        [
            *(b"kcat", b"-b", env.kafka.bootstrap.encode(), b"-P", b"-t", env.topics.deliver(LPS).encode()),
            *(b"-k", clinic.encode(), b"-H", b"bad-\xff-name=x"),
        ],
        input=to_bytes(poison) + b"\n",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    producer = make_producer(env.kafka)
    await producer.start()
    try:
        await producer.send_and_wait(
            env.topics.deliver(LPS),
            value=to_bytes(nulled),
            key=clinic.encode(),
            headers=[("content-type", None), ("x-null", None)],
        )
    finally:
        await producer.stop()
    await env.produce(after)
    async with ReferenceLps() as lps, env.consumer(lps) as consumer:
        receipts = {r.data.message_id: r.data.outcome for _, r in await env.receipts(3)}
        (letter,) = await env.dead_letters(1)
        assert consumer.stats.consumed >= 4
    assert receipts == {m.id: Outcome.DELIVERED for m in (before, nulled, after)}
    headers = dict(letter.headers)
    assert headers[ERROR_STAGE] == b"parse"
    assert headers[ERROR_REASON] == b"a header name is not valid UTF-8"
    assert letter.value == to_bytes(poison)
