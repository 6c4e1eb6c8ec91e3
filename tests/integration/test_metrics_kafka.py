"""Accounting on a real broker: what `/metrics` says equals what was sent.

Two senders send known traffic (valid, invalid, forged, expired, a duplicate, a
message on the ingress topic of a tenant nobody knows); one clinic's endpoint
fails. The router (`prik broker run`, `PRIK_METRICS_PORT`) and an LPS consumer
are scraped and parsed the way a Prometheus server parses them.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiokafka.admin import NewTopic
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from consumers import Backoff, ClinicConsumer, ReferenceLps, WebhookDeliverer
from contracts import DirectoryEntry, Message, MessageType, Outcome, Receipt, codec, parse, to_bytes
from contracts.headers import CONTENT_TYPE
from contracts.parse import STRUCTURED_CONTENT_TYPE
from deploy import free_port
from deploy.directory import load_directory
from prik.kafka import admin_client, make_producer
from prik.metrics import OTHER
from producers import read_records, referral_status_notice, video_queue_notice

from .conftest import CLINIC, OTHER_CLINIC, RouterProcess, World

pytestmark = pytest.mark.kafka

CPR = "0101701234"
FAILING = "323456789012"  # another clinic of lps-xmo, whose endpoint answers 503
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"
VIDEO = MessageType.VIDEO_QUEUE.value
REFERRAL = MessageType.REFERRAL_STATUS.value
RECEIPT = MessageType.RECEIPT.value
Sample = tuple[str, dict[str, str], float]


def parsed(text: str) -> list[Sample]:
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def by_labels(samples: list[Sample], name: str, *keys: str) -> Counter[tuple[str, ...]]:
    got: Counter[tuple[str, ...]] = Counter()
    for sample_name, labels, value in samples:
        if sample_name == name and value:
            got[tuple(labels[k] for k in keys)] += int(value)
    return got


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return await response.text()


async def eventually(url: str, check: Any, within: float = 90) -> list[Sample]:
    deadline = time.monotonic() + within
    while True:
        samples = parsed(await scrape(url))
        if check(samples):
            return samples
        if time.monotonic() > deadline:
            pytest.fail(f"{url} never showed what was expected: {samples}")
        await asyncio.sleep(0.3)


def video(clinic: str, **update: Any) -> Message:
    notice = video_queue_notice("minlaege-video", clinic, event="joined", queue_entry_id="q-1", cpr=CPR)
    return notice.model_copy(update=update) if update else notice


def referral(tenant: str = "kommune-0101") -> Message:
    return referral_status_notice(
        tenant,
        CLINIC,
        referral_id="r-1",
        municipality_code="101",
        offer="TeleKOL",
        status="accepted",
        cpr=CPR,
    )


async def produce(world: World, records: list[tuple[str, bytes]]) -> None:
    producer = make_producer(world.kafka)
    await producer.start()
    try:
        for topic, value in records:
            await producer.send_and_wait(
                topic, value, key=CLINIC.encode(), headers=[(CONTENT_TYPE, STRUCTURED_CONTENT_TYPE.encode())]
            )
    finally:
        await producer.stop()


async def test_metrics_account_for_every_record_by_sender_and_lps(  # noqa: PLR0915  one scenario, asserted whole
    world: World, routers: Any
) -> None:
    topics = world.topics
    stranger = topics.ingress("stranger")  # an ingress topic of a tenant the tenants file does not know
    async with admin_client(world.kafka) as admin:
        await admin.create_topics([NewTopic(stranger, num_partitions=1, replication_factor=1)])
    await load_directory(world.kafka, topics, [DirectoryEntry(sor=FAILING, lps="lps-xmo")])
    metrics_port = free_port()
    router: RouterProcess = routers(
        "metrics", {"PRIK_METRICS_PORT": str(metrics_port), "PRIK_LOG_LEVEL": "debug"}
    )
    router_url = f"http://127.0.0.1:{metrics_port}/metrics"

    delivered = [video(CLINIC, traceparent=TRACEPARENT) for _ in range(5)]
    failing = [video(FAILING, traceparent=TRACEPARENT) for _ in range(2)]
    elsewhere = video(OTHER_CLINIC)  # routed to lps-other, which runs no consumer here
    stale = video(CLINIC, time=datetime.now(UTC) - timedelta(minutes=20))
    referrals = [referral() for _ in range(3)]
    video_sent: list[tuple[str, bytes]] = [
        *((topics.ingress("minlaege-video"), to_bytes(m)) for m in (*delivered, *failing, elsewhere, stale)),
        (topics.ingress("minlaege-video"), to_bytes(delivered[0])),  # a duplicate
        (topics.ingress("minlaege-video"), b'{"not": "a message", "cpr": "' + CPR.encode() + b'"}'),
        (topics.ingress("minlaege-video"), to_bytes(referral())),  # claims to be kommune-0101
    ]
    kommune_sent: list[tuple[str, bytes]] = [
        *((topics.ingress("kommune-0101"), to_bytes(m)) for m in referrals),
        (
            topics.ingress("kommune-0101"),
            to_bytes(video(CLINIC).model_copy(update={"source": "urn:prik:kommune-0101"})),
        ),
        (topics.ingress("kommune-0101"), b"\x00garbage " + CPR.encode()),
    ]
    stranger_sent = [(stranger, to_bytes(video(CLINIC)))]

    async with ReferenceLps() as lps:
        lps.fail_clinic(FAILING, status=503, for_seconds=600)
        consumer = ClinicConsumer(
            world.kafka,
            topics,
            "lps-xmo",
            WebhookDeliverer(lps.url, lps.secret, total_timeout=5),
            backoff=Backoff(base=0.2, cap=0.5),
            max_retry_time=2.0,
            stop_grace=2.0,
            http_port=0,
        )
        with capture_logs() as logs:
            async with consumer:
                await produce(world, [*video_sent, *kommune_sent, *stranger_sent])
                consumer_url = f"http://127.0.0.1:{consumer.http_port}/metrics"
                final = len(delivered) + len(referrals) + len(failing)
                consumer_samples = await eventually(
                    consumer_url,
                    lambda s: sum(by_labels(s, "prik_deliveries_total", "outcome").values()) == final,
                )
                # Once every receipt is routed too, the router has decided all it will see.
                expected_router_total = len(video_sent) + len(kommune_sent) + len(stranger_sent) + final
                router_samples = await eventually(
                    router_url,
                    lambda s: (
                        sum(by_labels(s, "prik_ingress_messages_total", "tenant").values())
                        >= expected_router_total
                    ),
                )
                consumer_samples = await eventually(
                    consumer_url, lambda s: not by_labels(s, "prik_oldest_undelivered_seconds", "lps")
                )
                consumer_text = await scrape(consumer_url)
                async with aiohttp.ClientSession() as http:
                    async with http.get(f"http://127.0.0.1:{consumer.http_port}/health") as response:
                        consumer_health = await response.json()
                    async with http.get(f"http://127.0.0.1:{metrics_port}/health") as response:
                        assert response.status == 200
                        router_health = await response.json()
        router_text = await scrape(router_url)
        router_samples = parsed(router_text)
        assert router.terminate() == 0

    # --- the router: per sender, per type and verdict, exactly what was sent -------------------------
    receipts = [
        record.value
        for record in [r async for r in read_records(world.kafka, topics.ingress("lps-xmo"))]
        if isinstance(parse(record.value, record.headers), Receipt)
    ]
    assert len(receipts) == final
    assert by_labels(router_samples, "prik_ingress_messages_total", "tenant", "type", "verdict") == {
        ("minlaege-video", VIDEO, "routed"): len(delivered) + len(failing) + 1,
        ("minlaege-video", VIDEO, "expired"): 1,
        ("minlaege-video", VIDEO, "duplicate"): 1,
        ("minlaege-video", OTHER, "rejected"): 1,  # not a message: its type is nobody's to pick
        ("minlaege-video", REFERRAL, "rejected"): 1,  # a forged source
        ("kommune-0101", REFERRAL, "routed"): len(referrals),
        ("kommune-0101", VIDEO, "rejected"): 1,  # a type it may not send
        ("kommune-0101", OTHER, "rejected"): 1,
        (OTHER, VIDEO, "rejected"): 1,  # the stranger's topic: no tenant of the file
        ("lps-xmo", RECEIPT, "forwarded"): final,
    }
    assert by_labels(router_samples, "prik_ingress_bytes_total", "tenant") == {
        ("minlaege-video",): sum(len(value) for _, value in video_sent),
        ("kommune-0101",): sum(len(value) for _, value in kommune_sent),
        (OTHER,): sum(len(value) for _, value in stranger_sent),
        ("lps-xmo",): sum(len(value) for value in receipts),
    }
    router_lags = [labels for name, labels, _ in router_samples if name == "prik_lag_records"]
    assert router_lags
    assert {labels["group"] for labels in router_lags} == {f"{topics.prefix}-router"}
    assert {labels["topic"] for labels in router_lags} <= {
        *(topics.ingress(t) for t in world.tenants.ids),
        stranger,
    }
    assert router_health["healthy"] is True
    assert router_health["records"] == expected_router_total
    assert router_health["last_commit_age_seconds"] is not None

    # --- the consumer: per outcome and result, exactly what the LPS answered --------------------------
    assert by_labels(consumer_samples, "prik_deliveries_total", "lps", "outcome") == {
        ("lps-xmo", Outcome.DELIVERED.value): len(delivered) + len(referrals),
        ("lps-xmo", Outcome.DEAD_LETTERED.value): len(failing),
    }
    assert by_labels(consumer_samples, "prik_delivery_attempts_total", "result") == {
        ("ok",): len(delivered) + len(referrals),
        ("retry",): lps.answers[(FAILING, 503)],
    }
    assert by_labels(consumer_samples, "prik_delivery_latency_seconds_count", "lps") == {
        ("lps-xmo",): len(delivered) + len(referrals)
    }
    consumer_lags = [labels for name, labels, _ in consumer_samples if name == "prik_lag_records"]
    assert {(labels["group"], labels["topic"]) for labels in consumer_lags} == {
        (consumer.group_id, topics.deliver("lps-xmo"))
    }
    assert consumer_health["delivered"] == len(delivered) + len(referrals)
    assert consumer_health["healthy"] is True

    # --- no label value outside the known sets, and no patient data anywhere ---------------------------
    known = {
        "tenant": {*world.tenants.ids, OTHER},
        "type": {*MessageType, OTHER},
        "verdict": {"routed", "rejected", "expired", "duplicate", "forwarded", OTHER},
        "lps": {"lps-xmo"},
        "outcome": {o.value for o in Outcome} - {Outcome.REJECTED.value},
        "result": {"ok", "retry", "refused", "gone", "timeout", "error"},
        "group": {f"{topics.prefix}-router", consumer.group_id},
        "topic": {*(topics.ingress(t) for t in world.tenants.ids), stranger, topics.deliver("lps-xmo")},
    }
    for name, labels, _ in [*router_samples, *consumer_samples]:
        for label, label_value in labels.items():
            if label == "partition":
                assert 0 <= int(label_value) < 6, (name, labels)
            elif label != "le":
                assert label_value in known[label], (name, label, label_value)
    for text in (router_text, consumer_text, codec.dumps(consumer_health).decode()):
        assert CPR not in text
        assert "stranger" not in text.replace(stranger, "")

    # --- log lines about a traced message carry its trace id ------------------------------------------
    traced_ids = {m.id for m in (*delivered, *failing)}
    retried = [line for line in logs if line.get("message_id") in traced_ids and "retry" in line["event"]]
    assert retried
    assert all(line["trace_id"] == TRACE_ID for line in retried)
    router_log = router.output().decode()
    decided = [codec.loads(line) for line in router_log.splitlines() if '"router.decided"' in line]
    assert {line["message_id"] for line in decided if line.get("trace_id") == TRACE_ID} == traced_ids
    assert CPR not in router_log
    assert CPR not in repr(logs)
