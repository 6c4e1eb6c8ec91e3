"""Each routing rule, in memory, on two transports: FastStream's `TestKafkaBroker` and `Router` + `Batch`.

The `harness` fixture (tests/inmemory/conftest.py) runs every test here once
through the FastStream app (`faststream`) and once against the bare router
(`direct`), so a rule holds whatever moves the bytes.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from contracts import (
    Message,
    Outcome,
    Receipt,
    codec,
    contains_cpr,
    parse,
    to_binary,
    to_bytes,
)
from contracts import headers as h
from producers import build
from tests.inmemory.harness import CLINIC, CPR, OTHER_CLINIC, UNKNOWN_CLINIC, Harness


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


def route_token(harness: Harness, message: Message, lps: str = "lps-xmo") -> bytes:
    """The `prik-route` token on the record that delivered `message` to `lps`, as its consumer echoes it."""
    [record] = [
        r for r in harness.seen.records[harness.topics.deliver(lps)] if parse(r.value).id == message.id
    ]
    return dict(record.headers)[h.ROUTE]


async def test_a_delivery_carries_a_route_token_for_that_message_and_that_lps(harness: Harness) -> None:
    message = video()
    await harness.send("minlaege-video", message)
    token = route_token(harness, message)
    tokens = harness.router.tokens
    assert tokens.valid(token, message.id, message.source, "lps-xmo")
    assert not tokens.valid(token, message.id, message.source, "lps-other")
    assert not tokens.valid(token, "another-id", message.source, "lps-xmo")


async def test_receipt_from_serving_lps_is_forwarded_to_sender(harness: Harness) -> None:
    message = video()
    await harness.send("minlaege-video", message)
    receipt = lps_receipt("lps-xmo", message)
    await harness.send("lps-xmo", receipt, headers=((h.ROUTE, route_token(harness, message)),))
    assert harness.receipts("minlaege-video") == [receipt]
    assert not harness.seen.records[harness.topics.dlq]


async def test_receipt_without_the_route_token_is_refused(harness: Harness) -> None:
    message = video()
    await harness.send("minlaege-video", message)
    await harness.send("lps-xmo", lps_receipt("lps-xmo", message))
    assert harness.receipts("minlaege-video") == []
    assert harness.seen.header(harness.topics.dlq, h.ERROR_STAGE) == "authorise"
    # No receipt about a receipt: that would loop.
    assert harness.receipts("lps-xmo") == []


async def test_forged_receipt_from_lps_not_serving_the_clinic_is_refused(harness: Harness) -> None:
    """lps-other echoes the token of a record delivered to lps-xmo: it confirms what it never got."""
    message = video()
    await harness.send("minlaege-video", message)
    stolen = route_token(harness, message)
    await harness.send("lps-other", lps_receipt("lps-other", message), headers=((h.ROUTE, stolen),))
    assert harness.receipts("minlaege-video") == []
    assert harness.seen.header(harness.topics.dlq, h.ERROR_STAGE) == "authorise"
    assert harness.receipts("lps-other") == []


async def test_a_route_token_confirms_only_its_own_message(harness: Harness) -> None:
    delivered, other = video(), video()
    await harness.send("minlaege-video", delivered)
    token = route_token(harness, delivered)
    await harness.send("lps-xmo", lps_receipt("lps-xmo", other), headers=((h.ROUTE, token),))
    assert harness.receipts("minlaege-video") == []
    assert harness.seen.header(harness.topics.dlq, h.ERROR_STAGE) == "authorise"


async def test_producer_may_not_send_receipts(harness: Harness) -> None:
    message = video()
    forged = lps_receipt("lps-xmo", message).model_copy(update={"source": "urn:prik:kommune-0101"})
    await harness.send("kommune-0101", forged)
    assert harness.seen.header(harness.topics.dlq, h.ERROR_STAGE) == "authorise"
    assert harness.receipts("minlaege-video") == []


async def test_the_router_keeps_the_tasks_state_it_forwarded(harness: Harness) -> None:
    request = build.task_request("kommune-0101", CLINIC, code="KOL-1")
    key = str(request.data.task_id)
    await harness.send("kommune-0101", request)
    await harness.send("lps-xmo", build.task_status("lps-xmo", request.data.task_id, "received"))
    task = harness.router.tasks.get(key)
    assert task is not None
    assert (task.status, task.requester, task.lps, task.recipient) == (
        "received",
        "kommune-0101",
        "lps-xmo",
        CLINIC,
    )
    assert task.request_id == request.id


# -- canonical bytes and CloudEvents extensions -----------------------------------------------

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
EXTENSIONS = {"traceparent": TRACEPARENT, "tracestate": "rojo=00f067aa0ba902b7", "partitionkey": "queue-7"}


def with_attributes(message: Message, **attributes: str) -> Message:
    raw = codec.loads(to_bytes(message))
    raw.update(attributes)
    return parse(codec.dumps(raw))


def delivered_to_xmo(harness: Harness) -> list[bytes | None]:
    return harness.seen.values(harness.topics.deliver("lps-xmo"))


async def test_reformatted_json_is_forwarded_as_canonical_bytes_never_the_senders(harness: Harness) -> None:
    message = video()
    sent = codec.dumps(codec.loads(to_bytes(message)), indent=True)  # sorted keys, indented, newlines
    assert sent != to_bytes(message)
    await harness.send_raw("minlaege-video", sent)
    assert delivered_to_xmo(harness) == [to_bytes(parse(sent))]
    assert parse(sent) == message
    assert harness.seen.header(harness.topics.deliver("lps-xmo"), h.CONTENT_TYPE) == (
        "application/cloudevents+json"
    )


async def test_binary_mode_is_forwarded_as_the_canonical_structured_bytes(harness: Harness) -> None:
    message = video()
    await harness.send("minlaege-video", message, binary=True)
    assert delivered_to_xmo(harness) == [to_bytes(message)]
    record = harness.seen.records[harness.topics.deliver("lps-xmo")][0]
    assert not any(k.startswith(h.CE_PREFIX) for k, _ in record.headers)


async def test_a_forwarded_receipt_is_canonical_too(harness: Harness) -> None:
    message = video()
    await harness.send("minlaege-video", message)
    receipt = lps_receipt("lps-xmo", message)
    sent = b"  " + codec.dumps(codec.loads(to_bytes(receipt)), indent=True) + b"\n"
    await harness.send_raw("lps-xmo", sent, ((h.ROUTE, route_token(harness, message)),))
    assert harness.seen.values(harness.topics.replies("minlaege-video")) == [to_bytes(receipt)]


async def test_the_dead_letter_keeps_the_senders_own_bytes(harness: Harness) -> None:
    """What failed is kept as sent, for the operator; only what is forwarded is re-encoded."""
    raw = codec.loads(to_bytes(video(UNKNOWN_CLINIC)))
    sent = codec.dumps(raw, indent=True)
    await harness.send_raw("minlaege-video", sent)
    assert harness.seen.values(harness.topics.dlq) == [sent]
    assert harness.seen.header(harness.topics.dlq, h.ERROR_STAGE) == "route"


async def test_trace_and_partition_extensions_reach_the_lps_structured(harness: Harness) -> None:
    message = with_attributes(video(), **EXTENSIONS)
    await harness.send("minlaege-video", message)
    [delivered] = harness.seen.messages(harness.topics.deliver("lps-xmo"))
    assert delivered == message
    assert (delivered.traceparent, delivered.tracestate, delivered.partitionkey) == tuple(EXTENSIONS.values())
    assert delivered_to_xmo(harness) == [to_bytes(message)]


async def test_trace_and_partition_extensions_reach_the_lps_from_binary_mode(harness: Harness) -> None:
    message = with_attributes(video(), **EXTENSIONS)
    value, headers = to_binary(message)
    assert ("ce_traceparent", TRACEPARENT.encode()) in headers
    await harness.send("minlaege-video", message, binary=True)
    [delivered] = harness.seen.messages(harness.topics.deliver("lps-xmo"))
    assert (delivered.traceparent, delivered.tracestate, delivered.partitionkey) == tuple(EXTENSIONS.values())
    assert delivered_to_xmo(harness) == [to_bytes(message)]
    assert value not in delivered_to_xmo(harness)


async def test_extensions_survive_a_forwarded_task_status(harness: Harness) -> None:
    request = build.task_request("kommune-0101", CLINIC, code="KOL-1")
    await harness.send("kommune-0101", request)
    status = with_attributes(build.task_status("lps-xmo", request.data.task_id, "received"), **EXTENSIONS)
    await harness.send("lps-xmo", status)
    forwarded = [
        m for m in harness.seen.messages(harness.topics.replies("kommune-0101")) if m.id == status.id
    ]
    assert forwarded == [status]
    assert forwarded[0].traceparent == TRACEPARENT


async def test_an_unknown_extension_attribute_is_refused(harness: Harness) -> None:
    message = video()
    raw = codec.loads(to_bytes(message))
    raw["comexampleextension1"] = "value"
    await harness.send_raw("minlaege-video", codec.dumps(raw))
    assert not delivered_to_xmo(harness)
    assert harness.seen.header(harness.topics.dlq, h.ERROR_STAGE) == "validate"
    assert "comexampleextension1" in harness.seen.header(harness.topics.dlq, h.ERROR_REASON)
    [receipt] = harness.receipts("minlaege-video")
    assert (receipt.data.outcome, receipt.data.message_id) == (Outcome.REJECTED, message.id)


async def test_an_unknown_binary_mode_extension_header_is_refused(harness: Harness) -> None:
    message = video()
    value, headers = to_binary(message)
    await harness.send_raw("minlaege-video", value, (*headers, ("ce_comexampleextension1", b"value")))
    assert not delivered_to_xmo(harness)
    assert harness.seen.header(harness.topics.dlq, h.ERROR_STAGE) == "validate"
    [receipt] = harness.receipts("minlaege-video")
    assert (receipt.data.outcome, receipt.data.message_id) == (Outcome.REJECTED, message.id)


async def test_a_malformed_traceparent_is_refused(harness: Harness) -> None:
    await harness.send_raw("minlaege-video", to_bytes(video())[:-1] + b',"traceparent":"00-xyz"}')
    assert not delivered_to_xmo(harness)
    assert harness.seen.header(harness.topics.dlq, h.ERROR_STAGE) == "validate"
    assert "traceparent" in harness.seen.header(harness.topics.dlq, h.ERROR_REASON)


async def test_a_duplicated_recipient_is_refused_not_routed_on_either_value(harness: Harness) -> None:
    value = to_bytes(video(OTHER_CLINIC))
    assert value.endswith(b"}")
    await harness.send_raw("minlaege-video", value[:-1] + b',"recipient":"' + CLINIC.encode() + b'"}')
    assert not delivered_to_xmo(harness)
    assert not harness.seen.records[harness.topics.deliver("lps-other")]
    assert harness.seen.header(harness.topics.dlq, h.ERROR_STAGE) in {"parse", "validate"}
    assert harness.receipts("minlaege-video")[0].data.outcome is Outcome.REJECTED


async def test_a_cpr_in_the_datacontenttype_is_refused(harness: Harness) -> None:
    """No CPR outside `data`: a content-type parameter is envelope, and forwarded as such."""
    raw = codec.loads(to_bytes(video()))
    raw["datacontenttype"] = f"application/json; x={CPR}"
    await harness.send_raw("minlaege-video", codec.dumps(raw))
    assert not delivered_to_xmo(harness)
    assert harness.seen.header(harness.topics.dlq, h.ERROR_STAGE) == "validate"
    assert not contains_cpr(harness.seen.header(harness.topics.dlq, h.ERROR_REASON))
