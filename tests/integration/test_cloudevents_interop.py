"""The CloudEvents Python SDK (its v1 Kafka binding) as an independent client of prik.

A sender builds prik messages as SDK events, with the documented extensions
`partitionkey`, `traceparent` and `tracestate`, and publishes them with the SDK's
`to_binary` and `to_structured` (whose structured content-type is the data's,
`application/json`: pitfall 16). The router routes them; the LPS side reads the
delivered record back with the SDK's `from_structured` and finds what was sent.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from cloudevents.v1.http import CloudEvent
from cloudevents.v1.kafka import KafkaMessage, from_structured, to_binary, to_structured

from contracts import headers as h
from producers.reading import read_records

from .conftest import CLINIC, RouterProcess, World

pytestmark = pytest.mark.kafka

CPR = "0101901234"
VIDEO_TYPE = "dk.prik.advisory.video-queue.v1"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _event(partitionkey: str, **extra: str) -> CloudEvent:
    now = datetime.now(UTC)
    attributes = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "urn:prik:minlaege-video",
        "type": VIDEO_TYPE,
        "time": _iso(now),
        "datacontenttype": "application/json",
        "recipient": CLINIC,
        "expiresat": _iso(now + timedelta(minutes=30)),
        "priority": "urgent",
        "partitionkey": partitionkey,
        "traceparent": TRACEPARENT,
        **extra,
    }
    data = {
        "queue_entry_id": f"q-{attributes['id'][:8]}",
        "event": "joined",
        "patient": {"cpr": CPR},
        "position": 2,
        "waiting_since": _iso(now - timedelta(minutes=1)),
    }
    return CloudEvent(attributes, data)


def _kafka_value(message: KafkaMessage) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    key = message.key.encode() if isinstance(message.key, str) else message.key
    value = message.value.encode() if isinstance(message.value, str) else message.value
    return key, value, list(message.headers.items())


async def _publish(world: World, messages: list[KafkaMessage]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=world.kafka.bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for message in messages:
            key, value, headers = _kafka_value(message)
            await producer.send_and_wait(
                world.topics.ingress("minlaege-video"), value, key=key, headers=headers
            )
    finally:
        await producer.stop()


def _plain(value: Any) -> Any:
    # The SDK's from_structured reads a Kafka key (bytes) into `partitionkey` as it is.
    return value.decode() if isinstance(value, bytes) else value


async def test_sdk_events_in_binary_and_structured_mode_reach_the_lps_as_sent(
    world: World, router: RouterProcess
) -> None:
    binary = [_event(CLINIC), _event(CLINIC, tracestate="congo=t61rcWkgMzE")]
    # In binary mode the SDK writes `partitionkey` as the Kafka key (the clinic, as prik's
    # ingress topics are keyed); in structured mode it stays in the JSON, so it may differ.
    structured = [_event(CLINIC), _event(f"pk-{uuid.uuid4().hex[:12]}", tracestate="rojo=00f067aa0ba902b7")]
    refused = [_event(CLINIC, comexampleextension="value"), _event(CLINIC, foo="bar")]
    wire = [to_binary(e) for e in binary] + [to_structured(e) for e in structured]
    wire += [to_binary(refused[0]), to_structured(refused[1])]
    assert all(dict(m.headers).get("content-type") == b"application/json" for m in wire)
    await _publish(world, wire)

    sent = {e["id"]: e for e in binary + structured}
    delivered = await world.wait_for(world.topics.deliver("lps-xmo"), len(sent))
    assert sorted(m.id for m in delivered if m is not None) == sorted(sent)
    records = [r async for r in read_records(world.kafka, world.topics.deliver("lps-xmo"))]
    for record in records:
        got = from_structured(KafkaMessage(dict(record.headers), record.key, record.value))
        expected = sent[got["id"]]
        attributes = {k: _plain(v) for k, v in got.get_attributes().items()}
        for name, value in expected.get_attributes().items():
            if name == "datacontenttype":
                # The SDK takes the record's content-type header for it: prik writes
                # structured mode, `application/cloudevents+json`, as the binding says.
                assert attributes[name] == "application/cloudevents+json"
                continue
            assert attributes.get(name) == value, name
        assert got.get_data() == expected.get_data()
        assert got["traceparent"] == TRACEPARENT
        assert record.key == CLINIC.encode()

    # Any other extension is still refused, in either mode.
    await world.wait_for(world.topics.dlq, len(refused))
    dead = [r async for r in read_records(world.kafka, world.topics.dlq)]
    assert len(dead) == len(refused)
    for record in dead:
        headers = dict(record.headers)
        assert headers[h.ERROR_STAGE] == b"validate"
        assert CPR.encode() not in headers[h.ERROR_REASON]
    assert router.terminate() == 0
