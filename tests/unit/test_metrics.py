"""Prometheus series of the router and the consumer: bounded labels, buckets, a parseable exposition."""

from __future__ import annotations

import asyncio
import itertools
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka.structs import TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from broker import Batch, DedupWindow, DirectoryTable, Incoming, Routed, Router, TaskTable
from broker.metrics import VERDICTS, RouterMetrics
from consumers import Backoff, CallbackDeliverer, ConsumerStats, DeliveryRefused, HealthReport
from consumers.http_api import RuntimeHttp
from consumers.pipeline import Phase, Pipeline, Record
from consumers.stats import ATTEMPT_RESULTS, ConsumerMetrics
from contracts import ConfigError, Message, MessageType, Outcome, Topics, codec, parse_tenants, to_bytes
from prik.logs import _LibraryHandler, trace_fields
from prik.metrics import LATENCY_BUCKETS, OTHER, SERIES, MetricsServer, bounded, exposition, set_lags
from producers import video_queue_notice

TENANTS = parse_tenants((Path(__file__).parent.parent / "data" / "tenants.toml").read_text())
TOPICS = Topics("t")
CLINIC = "123456789012"
CPR = "0101701234"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def samples(text: bytes) -> list[tuple[str, dict[str, str], float]]:
    """Every sample of an exposition, parsed the way a Prometheus server would."""
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    ]


def value(text: bytes, name: str, **labels: str) -> float:
    found = [v for n, got, v in samples(text) if n == name and got == labels]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def incoming(tenant: str, payload: bytes) -> Incoming:
    return Incoming(TOPICS.ingress(tenant), 0, 0, CLINIC.encode(), payload)


def notice(**update: Any) -> Message:
    message = video_queue_notice("minlaege-video", CLINIC, event="joined", queue_entry_id="q-1", cpr=CPR)
    return message.model_copy(update=update) if update else message


# --- labels ---------------------------------------------------------------------------------


def test_bounded_keeps_known_values_and_folds_the_rest_into_other() -> None:
    assert bounded("lps-xmo", {"lps-xmo"}) == "lps-xmo"
    assert bounded("lps-evil", {"lps-xmo"}) == OTHER
    assert bounded(None, {"lps-xmo"}) == OTHER


def test_router_counts_per_known_tenant_type_and_verdict_and_folds_the_unknown_into_other() -> None:
    metrics = RouterMetrics(TOPICS, lambda: TENANTS)
    video = MessageType.VIDEO_QUEUE.value
    metrics.decided(incoming("minlaege-video", b"x" * 10), Routed("routed", video))
    metrics.decided(incoming("minlaege-video", b"x" * 5), Routed("rejected", "dk.evil.made-up.v1"))
    # A topic of a tenant the tenants file does not know, and a CPR where a type would be.
    metrics.decided(incoming("stranger", b"x" * 7), Routed("rejected", CPR))
    metrics.decided(Incoming("t.ingress.minlaege-video", 0, 0, None, None), Routed("rejected", ""))
    metrics.decided(incoming("kommune-0101", b"x"), Routed("sideways", video))  # type: ignore[arg-type]  # a verdict no router makes
    text = exposition(metrics.registry)
    assert (
        value(text, "prik_ingress_messages_total", tenant="minlaege-video", type=video, verdict="routed") == 1
    )
    assert (
        value(text, "prik_ingress_messages_total", tenant="minlaege-video", type=OTHER, verdict="rejected")
        == 2
    )
    assert value(text, "prik_ingress_messages_total", tenant=OTHER, type=OTHER, verdict="rejected") == 1
    assert value(text, "prik_ingress_messages_total", tenant="kommune-0101", type=video, verdict=OTHER) == 1
    assert value(text, "prik_ingress_bytes_total", tenant="minlaege-video") == 15
    assert value(text, "prik_ingress_bytes_total", tenant=OTHER) == 7
    assert CPR not in text.decode()
    assert "stranger" not in text.decode()
    for name, labels, _ in samples(text):
        if name == "prik_ingress_messages_total":
            assert labels["tenant"] in {*TENANTS.ids, OTHER}
            assert labels["type"] in {*MessageType, OTHER}
            assert labels["verdict"] in {*VERDICTS, OTHER}


def test_a_batch_counts_exactly_as_its_records_one_by_one() -> None:
    video, receipt = MessageType.VIDEO_QUEUE.value, MessageType.RECEIPT.value
    decided = [
        (incoming("minlaege-video", b"x" * 10), Routed("routed", video)),
        (incoming("minlaege-video", b"x" * 3), Routed("routed", video)),
        (incoming("minlaege-video", b"x" * 5), Routed("duplicate", video)),
        (incoming("lps-xmo", b"x" * 4), Routed("forwarded", receipt)),
        (incoming("stranger", b"x" * 7), Routed("rejected", CPR)),
        (Incoming("t.ingress.lps-xmo", 0, 0, None, None), Routed("rejected", "")),
    ]
    one_by_one, batched = RouterMetrics(TOPICS, lambda: TENANTS), RouterMetrics(TOPICS, lambda: TENANTS)
    for rec, routed in decided:
        one_by_one.decided(rec, routed)
    batched.decided_all(decided)
    batched.decided_all([])
    assert samples(exposition(batched.registry)) == samples(exposition(one_by_one.registry))
    text = exposition(batched.registry)
    assert (
        value(text, "prik_ingress_messages_total", tenant="minlaege-video", type=video, verdict="routed") == 2
    )
    assert value(text, "prik_ingress_bytes_total", tenant="minlaege-video") == 18
    assert value(text, "prik_ingress_bytes_total", tenant="lps-xmo") == 4


def test_a_tenant_removed_from_the_tenants_file_is_other_from_then_on() -> None:
    current = [TENANTS]
    metrics = RouterMetrics(TOPICS, lambda: current[0])
    assert metrics.tenant_of(TOPICS.ingress("kommune-0101")) == "kommune-0101"
    current[0] = parse_tenants('[[tenant]]\nid = "lps-xmo"\nrole = "lps"\n')
    assert metrics.tenant_of(TOPICS.ingress("kommune-0101")) == OTHER
    assert metrics.tenant_of("t.deliver.lps-xmo") == OTHER  # not an ingress topic at all


def test_consumer_series_exist_at_zero_with_only_known_label_values() -> None:
    metrics = ConsumerMetrics("lps-xmo")
    text = exposition(metrics.registry)
    got = samples(text)
    assert {labels["result"] for name, labels, _ in got if name == "prik_delivery_attempts_total"} == set(
        ATTEMPT_RESULTS
    )
    assert {labels["outcome"] for name, labels, _ in got if name == "prik_deliveries_total"} == {
        "delivered",
        "expired",
        "dead-lettered",
    }
    assert value(text, "prik_oldest_undelivered_seconds", lps="lps-xmo") == 0
    assert all(v == 0 for name, _, v in got)
    assert {labels.get("lps") for _, labels, _ in got} == {"lps-xmo"}


def test_every_sample_belongs_to_a_series_of_design_md() -> None:
    router = RouterMetrics(TOPICS, lambda: TENANTS)
    router.decided(incoming("minlaege-video", b"x"), Routed("routed", MessageType.VIDEO_QUEUE.value))
    router.committed()
    set_lags(router.lag, "t-router", [("t.ingress.minlaege-video", 3, 12)])
    consumer = ConsumerMetrics("lps-xmo")
    consumer.answered(datetime.now(UTC) - timedelta(seconds=1))
    consumer.lags("t-lps-xmo", [("t.deliver.lps-xmo", 0, 2)])
    suffixes = ("", "_bucket", "_sum", "_count")
    own = {"prik_router_batches_total", "prik_router_aborted_batches_total"}
    own.add("prik_router_last_commit_timestamp_seconds")
    for registry in (router.registry, consumer.registry):
        for name, _, _ in samples(exposition(registry)):
            assert name in own or any(name.removesuffix(s) in SERIES for s in suffixes if name.endswith(s)), (
                name
            )
            assert not name.endswith("_created")
    assert (
        value(
            exposition(router.registry),
            "prik_lag_records",
            group="t-router",
            topic="t.ingress.minlaege-video",
            partition="3",
        )
        == 12
    )


def test_lag_series_follow_the_assignment() -> None:
    metrics = ConsumerMetrics("lps-xmo")
    metrics.lags("g", [("t.deliver.lps-xmo", 0, 5), ("t.deliver.lps-xmo", 1, 0)])
    metrics.lags("g", [("t.deliver.lps-xmo", 1, 3)])  # partition 0 was revoked
    lags = [
        (labels, v) for name, labels, v in samples(exposition(metrics.registry)) if name == "prik_lag_records"
    ]
    assert lags == [({"group": "g", "topic": "t.deliver.lps-xmo", "partition": "1"}, 3.0)]


# --- the latency histogram ---------------------------------------------------------------------


def test_latency_buckets_span_a_millisecond_to_a_minute() -> None:
    assert LATENCY_BUCKETS[0] == 0.001
    assert LATENCY_BUCKETS[-1] == 60.0
    assert list(LATENCY_BUCKETS) == sorted(set(LATENCY_BUCKETS))
    # Fine enough for p50/p99 anywhere in range: no step wider than 3x.
    assert all(b / a <= 3.0 for a, b in itertools.pairwise(LATENCY_BUCKETS))


def test_latency_is_observed_from_the_message_time() -> None:
    metrics = ConsumerMetrics("lps-xmo")
    now = datetime.now(UTC)
    metrics.answered(now - timedelta(milliseconds=0.5), at=now)  # first bucket
    metrics.answered(now - timedelta(seconds=7), at=now)  # 10 s bucket
    metrics.answered(now - timedelta(minutes=5), at=now)  # past the last bucket: +Inf only
    metrics.answered(now + timedelta(seconds=3), at=now)  # the sender's clock is ahead: 0
    text = exposition(metrics.registry)

    def bucket(le: str) -> float:
        return value(text, "prik_delivery_latency_seconds_bucket", lps="lps-xmo", le=le)

    assert bucket("0.001") == 2
    assert bucket("5.0") == 2
    assert bucket("10.0") == 3
    assert bucket("60.0") == 3
    assert bucket("+Inf") == 4
    assert value(text, "prik_delivery_latency_seconds_count", lps="lps-xmo") == 4
    assert abs(value(text, "prik_delivery_latency_seconds_sum", lps="lps-xmo") - 307.0005) < 0.01


def test_oldest_undelivered_is_an_age_never_negative() -> None:
    metrics = ConsumerMetrics("lps-xmo")
    now = datetime.now(UTC)
    metrics.undelivered(now - timedelta(seconds=42), now=now)
    assert value(exposition(metrics.registry), "prik_oldest_undelivered_seconds", lps="lps-xmo") == 42
    metrics.undelivered(now + timedelta(seconds=5), now=now)
    assert value(exposition(metrics.registry), "prik_oldest_undelivered_seconds", lps="lps-xmo") == 0
    metrics.undelivered(None)
    assert value(exposition(metrics.registry), "prik_oldest_undelivered_seconds", lps="lps-xmo") == 0


# --- the pipeline counts attempts and outcomes, and logs the trace id -----------------------------


class FakeOutbox:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, topic: str, **_: Any) -> None:
        self.sent.append(topic)


def pipeline(deliver: Any, metrics: ConsumerMetrics) -> Pipeline:
    return Pipeline(
        lps="lps-xmo",
        topics=TOPICS,
        deliverer=CallbackDeliverer(deliver),
        outbox=FakeOutbox(),  # type: ignore[arg-type]  # the same send()
        stats=ConsumerStats(),
        stopping=asyncio.Event(),
        backoff=Backoff(base=0.01, cap=0.01),
        max_retry_time=60.0,
        attempt_timeout=5.0,
        metrics=metrics,
    )


def record(message: Message) -> Record:
    tp = TopicPartition(TOPICS.deliver("lps-xmo"), 0)
    return Record(tp, 0, CLINIC.encode(), to_bytes(message), [], CLINIC, message)


async def test_attempts_outcomes_and_latency_are_counted_and_log_lines_carry_the_trace_id() -> None:
    calls = [0]

    async def flaky(_message: Message) -> None:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError(CPR)  # a callback's failure: retried, its text never logged
        if calls[0] == 3:
            msg = "no"
            raise DeliveryRefused(msg)

    metrics = ConsumerMetrics("lps-xmo")
    traced = pipeline(flaky, metrics)
    with capture_logs() as logs:
        assert await traced.finish(record(notice(traceparent=TRACEPARENT)), Phase())
        assert await traced.finish(record(notice(traceparent=TRACEPARENT)), Phase())
    text = exposition(metrics.registry)
    assert value(text, "prik_delivery_attempts_total", lps="lps-xmo", result="retry") == 1
    assert value(text, "prik_delivery_attempts_total", lps="lps-xmo", result="ok") == 1
    assert value(text, "prik_delivery_attempts_total", lps="lps-xmo", result="refused") == 1
    assert value(text, "prik_deliveries_total", lps="lps-xmo", outcome="delivered") == 1
    assert value(text, "prik_deliveries_total", lps="lps-xmo", outcome="dead-lettered") == 1
    assert value(text, "prik_delivery_latency_seconds_count", lps="lps-xmo") == 1
    about = [line for line in logs if "message_id" in line]
    assert about, logs
    assert all(line["trace_id"] == TRACE_ID for line in about)
    assert CPR not in repr(logs)


async def test_a_message_without_traceparent_logs_no_trace_id() -> None:
    async def refuse(_message: Message) -> None:
        msg = "no"
        raise DeliveryRefused(msg)

    with capture_logs() as logs:
        assert await pipeline(refuse, ConsumerMetrics("lps-xmo")).finish(record(notice()), Phase())
    assert [line for line in logs if "message_id" in line]
    assert not [line for line in logs if "trace_id" in line]


def test_trace_fields() -> None:
    assert trace_fields(TRACEPARENT) == {"trace_id": TRACE_ID}
    assert trace_fields(None) == {}


async def test_the_router_names_the_message_and_its_traceparent() -> None:
    directory = DirectoryTable()
    directory.apply(CLINIC.encode(), codec.dumps({"lps": "lps-xmo"}))
    router = Router(TOPICS, lambda: TENANTS, directory, TaskTable(), DedupWindow())
    message = notice(traceparent=TRACEPARENT)
    routed = await router.route(incoming("minlaege-video", to_bytes(message)), Batch())
    assert (routed.verdict, routed.message_id, routed.traceparent) == ("routed", message.id, TRACEPARENT)
    refused = await router.route(incoming("kommune-0101", to_bytes(notice())), Batch())
    assert refused.verdict == "rejected"
    assert refused.message_id is not None
    assert refused.traceparent is None


# --- serving ------------------------------------------------------------------------------------


def test_router_health_is_progress() -> None:
    metrics = RouterMetrics(TOPICS, lambda: TENANTS, stall_after=0.0)
    metrics.started()
    assert metrics.assess(running=False, lag=0) == (False, "not running")
    # With no stall allowed, the fetch loop must have turned this very instant.
    assert not metrics.assess(running=True, lag=0)[0]
    patient = RouterMetrics(TOPICS, lambda: TENANTS, stall_after=60.0)
    patient.started()
    assert patient.assess(running=True, lag=0) == (True, "idle")
    assert patient.assess(running=True, lag=3) == (True, "ok")
    patient.aborted_batch()
    assert patient.assess(running=True, lag=3)[0]  # a single abort is no stall
    stalled = RouterMetrics(TOPICS, lambda: TENANTS, stall_after=0.0)
    stalled.aborted_batch()
    stalled.polled()
    healthy, reason = stalled.assess(running=True, lag=3)
    assert not healthy
    assert "aborted" in reason or "fetch" in reason
    assert stalled.last_commit_age() is None
    stalled.committed()
    age = stalled.last_commit_age()
    assert age is not None
    assert age >= 0


async def test_metrics_server_serves_text_and_health() -> None:
    metrics = RouterMetrics(TOPICS, lambda: TENANTS)
    metrics.decided(incoming("minlaege-video", b"abc"), Routed("routed", MessageType.VIDEO_QUEUE.value))
    refreshed: list[bool] = []
    healthy = [True]

    async def refresh() -> None:
        refreshed.append(True)

    async def health() -> tuple[bool, dict[str, object]]:
        return healthy[0], {"healthy": healthy[0]}

    server = MetricsServer(
        host="127.0.0.1", port=0, registry=metrics.registry, health=health, refresh=refresh
    )
    await server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/metrics") as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                text = await response.read()
            async with http.get(f"{base}/health") as response:
                assert response.status == 200
                assert await response.json() == {"healthy": True}
            healthy[0] = False
            async with http.get(f"{base}/health") as response:
                assert response.status == 503
    finally:
        await server.stop()
    assert refreshed == [True]
    assert value(text, "prik_ingress_bytes_total", tenant="minlaege-video") == 3


async def test_consumer_http_serves_prometheus_text_and_json() -> None:
    metrics = ConsumerMetrics("lps-xmo")
    metrics.outcome(Outcome.DELIVERED)

    async def prometheus() -> bytes:
        return exposition(metrics.registry)

    async def answer(*_: Any) -> Any:
        raise AssertionError

    server = RuntimeHttp(
        host="127.0.0.1",
        port=0,
        secrets=None,
        health=lambda: HealthReport(healthy=True, reason="idle", pending=0, progress=None),
        metrics=lambda: {"progress": None, "delivered": 1, "endpoint": "enabled"},
        answer=answer,
        prometheus=prometheus,
    )
    await server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/metrics") as response:
                assert response.status == 200
                text = await response.read()
            async with http.get(f"{base}/metrics.json") as response:
                assert await response.json() == {"progress": None, "delivered": 1, "endpoint": "enabled"}
            async with http.get(f"{base}/health") as response:
                body = await response.json()
    finally:
        await server.stop()
    assert value(text, "prik_deliveries_total", lps="lps-xmo", outcome="delivered") == 1
    assert body["healthy"] is True
    assert body["delivered"] == 1
    assert body["reason"] == "idle"


def test_a_library_line_that_quotes_a_record_shows_its_size_only() -> None:
    # aiokafka's own debug line, as the producer logs it for every record.
    line = "Sending (key=%s value=%s) to %s"
    record = logging.LogRecord("aiokafka", logging.DEBUG, __file__, 1, line, (b"k", CPR.encode(), "tp"), None)
    with capture_logs() as logs:
        _LibraryHandler().emit(record)
    assert [entry["message"] for entry in logs] == ["Sending (key=<1 bytes> value=<10 bytes>) to tp"]


async def test_a_metrics_port_in_use_is_a_configuration_error() -> None:
    async def health() -> tuple[bool, dict[str, object]]:
        return True, {}

    registry = ConsumerMetrics("lps-xmo").registry
    first = MetricsServer(host="127.0.0.1", port=0, registry=registry, health=health)
    await first.start()
    assert first.port is not None
    second = MetricsServer(host="127.0.0.1", port=first.port, registry=registry, health=health)
    try:
        with pytest.raises(ConfigError, match="cannot serve metrics"):
            await second.start()
    finally:
        await first.stop()


class _FetchResponse:
    """Stands for aiokafka's protocol structs, whose repr carries whole message sets."""

    def __repr__(self) -> str:
        return f"FetchResponse(message_set={CPR.encode()!r})"


def test_a_library_line_that_quotes_a_response_or_nested_records_shows_no_content() -> None:
    # aiokafka's fetcher logs whole responses (%r); others quote tuples and dicts holding records.
    args = (_FetchResponse(), [("t", 0, CPR.encode())], {"value": CPR.encode()}, ("topic", 3), 7, None)
    line = "Fetch response %r, batch %s, extra %s, at %s, node %s, %s"
    record = logging.LogRecord("aiokafka", logging.DEBUG, __file__, 1, line, args, None)
    with capture_logs() as logs:
        _LibraryHandler().emit(record)
    [entry] = logs
    assert CPR not in entry["message"]
    assert entry["message"] == (
        "Fetch response '<_FetchResponse>', batch [['t', 0, '<10 bytes>']], "
        "extra {'value': '<10 bytes>'}, at ('topic', 3), node 7, None"
    )
