"""Each routing rule, in memory, through the FastStream app and `TestKafkaBroker`."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import KafkaBroker, KafkaMessage, TestKafkaBroker

from broker import build_app
from contracts import (
    Message,
    Outcome,
    Receipt,
    Topics,
    codec,
    contains_cpr,
    parse,
    parse_tenants,
    to_binary,
    to_bytes,
)
from contracts import headers as h
from prik.settings import Settings
from producers import build

TENANTS = parse_tenants((Path(__file__).parent.parent / "data" / "tenants.toml").read_text())
CLINIC = "123456789012"
OTHER_CLINIC = "223456789012"
UNKNOWN_CLINIC = "999999999999"
CPR = "0101901234"


@dataclass
class Captured:
    # The raw records FastStream hands over: ConsumerRecord-like, untyped.
    records: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))

    def values(self, topic: str) -> list[bytes]:
        return [r.value for r in self.records[topic]]

    def messages(self, topic: str) -> list[Message]:
        return [parse(v) for v in self.values(topic)]

    def header(self, topic: str, name: str, index: int = -1) -> str:
        value: bytes = dict(self.records[topic][index].headers)[name]
        return value.decode()


@dataclass
class Harness:
    broker: KafkaBroker
    topics: Topics
    seen: Captured

    async def send(self, tenant: str, message: Message, *, binary: bool = False) -> None:
        if binary:
            value, headers = to_binary(message)
            hdrs = {k: v.decode() for k, v in headers}
        else:
            value, hdrs = to_bytes(message), {"content-type": "application/cloudevents+json"}
        await self.broker.publish(value, self.topics.ingress(tenant), key=b"k", headers=hdrs)

    async def send_raw(self, tenant: str, value: bytes) -> None:
        await self.broker.publish(value, self.topics.ingress(tenant), key=b"k")

    def receipts(self, tenant: str) -> list[Receipt]:
        return [m for m in self.seen.messages(self.topics.replies(tenant)) if isinstance(m, Receipt)]


@pytest.fixture
async def harness(unique: str) -> AsyncIterator[Harness]:
    settings = Settings(topic_prefix=f"mem-{unique}")
    topics = settings.topics
    _app, broker, _router = build_app(settings, lambda: TENANTS)
    seen = Captured()
    outputs = [
        topics.deliver("lps-xmo"),
        topics.deliver("lps-other"),
        topics.dlq,
        *(topics.replies(t) for t in TENANTS.ids),
    ]
    for topic in outputs:
        broker.subscriber(topic)(_capture_into(seen))

    async with TestKafkaBroker(broker) as test_broker:
        for sor, lps in ((CLINIC, "lps-xmo"), (OTHER_CLINIC, "lps-other")):
            await test_broker.publish(
                codec.dumps({"lps": lps, "name": None, "ydernummer": None}),
                topics.directory,
                key=sor.encode(),
            )
        yield Harness(test_broker, topics, seen)


def _capture_into(seen: Captured) -> Callable[[KafkaMessage], Awaitable[None]]:
    # FastStream reads a handler's parameters as the message body: keep only `msg`.
    async def capture(msg: KafkaMessage) -> None:
        record: Any = msg.raw_message
        seen.records[record.topic].append(record)

    return capture


def lps_receipt(lps: str, message: Message) -> Receipt:
    """LPS `lps` says it delivered `message` to CLINIC."""
    return build.receipt(
        lps,
        message_id=message.id,
        message_source=message.source,
        message_type=message.type,
        outcome="delivered",
        recipient=CLINIC,
    )


def video(clinic: str = CLINIC, **kw: Any) -> Message:
    return build.video_queue_notice(
        "minlaege-video", clinic, event="joined", queue_entry_id="q-1", cpr=CPR, **kw
    )


async def test_valid_advisory_is_routed_to_the_clinics_lps_keyed_by_sor(harness: Harness) -> None:
    message = video()
    await harness.send("minlaege-video", message)
    delivered = harness.seen.records[harness.topics.deliver("lps-xmo")]
    assert len(delivered) == 1
    assert delivered[0].key == CLINIC.encode()
    assert parse(delivered[0].value) == message
    assert not harness.seen.records[harness.topics.dlq]


async def test_binary_mode_is_accepted_and_forwarded_structured(harness: Harness) -> None:
    message = video()
    await harness.send("minlaege-video", message, binary=True)
    assert harness.seen.messages(harness.topics.deliver("lps-xmo")) == [message]


async def test_unparsable_bytes_are_dead_lettered_with_reason_and_rejected(harness: Harness) -> None:
    await harness.send_raw("minlaege-video", b"{not json")
    dlq = harness.topics.dlq
    assert harness.seen.values(dlq) == [b"{not json"]
    assert harness.seen.header(dlq, h.ERROR_STAGE) == "parse"
    assert harness.seen.header(dlq, h.ORIGINAL_TOPIC) == harness.topics.ingress("minlaege-video")
    [receipt] = harness.receipts("minlaege-video")
    assert receipt.data.outcome is Outcome.REJECTED
    assert receipt.source == "urn:prik:router"


async def test_invalid_message_reason_names_the_field_never_the_cpr(harness: Harness) -> None:
    raw = codec.loads(to_bytes(video()))
    raw["data"]["position"] = 0
    await harness.send_raw("minlaege-video", codec.dumps(raw))
    reason = harness.seen.header(harness.topics.dlq, h.ERROR_REASON)
    assert harness.seen.header(harness.topics.dlq, h.ERROR_STAGE) == "validate"
    assert "position" in reason
    assert not contains_cpr(reason)
    [receipt] = harness.receipts("minlaege-video")
    assert receipt.data.message_id == raw["id"]
    assert receipt.data.outcome is Outcome.REJECTED


async def test_source_must_match_the_ingress_topics_tenant(harness: Harness) -> None:
    forged = build.video_queue_notice("kommune-0101", CLINIC, event="joined", queue_entry_id="q")
    await harness.send("minlaege-video", forged)
    assert harness.seen.header(harness.topics.dlq, h.ERROR_STAGE) == "authenticate"
    assert not harness.seen.records[harness.topics.deliver("lps-xmo")]
    assert harness.receipts("minlaege-video")[0].data.outcome is Outcome.REJECTED


async def test_tenant_may_only_send_its_types(harness: Harness) -> None:
    message = build.task_request("minlaege-video", CLINIC, code="X")
    await harness.send("minlaege-video", message)
    assert harness.seen.header(harness.topics.dlq, h.ERROR_STAGE) == "authorise"
    [receipt] = harness.receipts("minlaege-video")
    assert receipt.data.message_id == message.id
    assert "may not send" in (receipt.data.reason or "")


async def test_duplicate_of_source_and_id_is_dropped(harness: Harness) -> None:
    message = video()
    await harness.send("minlaege-video", message)
    await harness.send("minlaege-video", message)
    assert len(harness.seen.records[harness.topics.deliver("lps-xmo")]) == 1
    assert not harness.seen.records[harness.topics.dlq]


async def test_expired_message_gets_expired_receipt_and_no_delivery(harness: Harness) -> None:
    message = video(expires_in=timedelta(seconds=-1))
    await harness.send("minlaege-video", message)
    assert not harness.seen.records[harness.topics.deliver("lps-xmo")]
    [receipt] = harness.receipts("minlaege-video")
    assert receipt.data.outcome is Outcome.EXPIRED
    assert receipt.data.message_id == message.id


async def test_unknown_clinic_is_dead_lettered_and_rejected(harness: Harness) -> None:
    await harness.send("minlaege-video", video(UNKNOWN_CLINIC))
    assert harness.seen.header(harness.topics.dlq, h.ERROR_STAGE) == "route"
    assert harness.receipts("minlaege-video")[0].data.outcome is Outcome.REJECTED


async def test_task_round_trip_and_state_machine(harness: Harness) -> None:
    request = build.task_request("kommune-0101", CLINIC, code="KOL-1", cpr=CPR)
    task_id = request.data.task_id
    await harness.send("kommune-0101", request)
    assert harness.seen.messages(harness.topics.deliver("lps-xmo")) == [request]

    accepted = build.task_status("lps-xmo", task_id, "received")
    await harness.send("lps-xmo", accepted)
    forwarded = [
        m for m in harness.seen.messages(harness.topics.replies("kommune-0101")) if m.id == accepted.id
    ]
    assert forwarded == [accepted]
    assert [r.data.outcome for r in harness.receipts("lps-xmo")] == [Outcome.DELIVERED]

    # received -> completed skips the lifecycle: refused, dead-lettered, rejected to the LPS.
    await harness.send("lps-xmo", build.task_status("lps-xmo", task_id, "completed"))
    assert harness.seen.header(harness.topics.dlq, h.ERROR_STAGE) == "task"
    assert harness.receipts("lps-xmo")[-1].data.outcome is Outcome.REJECTED

    # The requester cancels: forwarded to the clinic's LPS, addressed to the clinic.
    cancel = build.task_status("kommune-0101", task_id, "cancelled")
    await harness.send("kommune-0101", cancel)
    [*_, forwarded_cancel] = harness.seen.messages(harness.topics.deliver("lps-xmo"))
    assert forwarded_cancel.id == cancel.id
    assert forwarded_cancel.recipient == CLINIC


async def test_foreign_lps_may_not_move_a_task(harness: Harness) -> None:
    request = build.task_request("kommune-0101", CLINIC, code="KOL-1")
    await harness.send("kommune-0101", request)
    await harness.send("lps-other", build.task_status("lps-other", request.data.task_id, "received"))
    assert harness.seen.header(harness.topics.dlq, h.ERROR_STAGE) == "authorise"
    assert harness.receipts("lps-other")[-1].data.outcome is Outcome.REJECTED


async def test_requester_may_not_set_lps_statuses(harness: Harness) -> None:
    request = build.task_request("kommune-0101", CLINIC, code="KOL-1")
    await harness.send("kommune-0101", request)
    await harness.send("kommune-0101", build.task_status("kommune-0101", request.data.task_id, "accepted"))
    assert harness.seen.header(harness.topics.dlq, h.ERROR_STAGE) == "authorise"


async def test_status_for_unknown_task_is_refused(harness: Harness) -> None:
    await harness.send("lps-xmo", build.task_status("lps-xmo", uuid.uuid4(), "received"))
    assert harness.seen.header(harness.topics.dlq, h.ERROR_STAGE) == "task"


async def test_receipt_from_serving_lps_is_forwarded_to_sender(harness: Harness) -> None:
    message = video()
    receipt = lps_receipt("lps-xmo", message)
    await harness.send("lps-xmo", receipt)
    assert harness.receipts("minlaege-video") == [receipt]


async def test_forged_receipt_from_lps_not_serving_the_clinic_is_refused(harness: Harness) -> None:
    message = video()
    forged = lps_receipt("lps-other", message)
    await harness.send("lps-other", forged)
    assert harness.receipts("minlaege-video") == []
    assert harness.seen.header(harness.topics.dlq, h.ERROR_STAGE) == "receipt"
    # No receipt about a receipt: that would loop.
    assert harness.receipts("lps-other") == []


async def test_producer_may_not_send_receipts(harness: Harness) -> None:
    message = video()
    forged = lps_receipt("lps-xmo", message).model_copy(update={"source": "urn:prik:kommune-0101"})
    await harness.send("kommune-0101", forged)
    assert harness.seen.header(harness.topics.dlq, h.ERROR_STAGE) == "authorise"
    assert harness.receipts("minlaege-video") == []
