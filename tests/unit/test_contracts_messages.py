"""Every message type: valid and invalid examples, expiry, kinds and schemas."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from contracts import (
    MESSAGE_CLASSES,
    VIDEO_QUEUE_DEFAULT_TTL,
    MessageType,
    ParseError,
    Receipt,
    TaskStatusUpdate,
    VideoQueueNotice,
    dumps,
    effective_expiry,
    example_messages,
    is_expired,
    json_schemas,
    kind_of,
    parse,
    schema_filename,
    to_bytes,
)

EXAMPLES = example_messages()
ALL_TYPES = list(MessageType)


def _as_dict(message_type: MessageType) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads(to_bytes(EXAMPLES[message_type]))
    return loaded


def _reason_of(obj: dict[str, Any]) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse(dumps(obj))
    return info.value


@pytest.mark.parametrize("message_type", ALL_TYPES)
def test_example_is_valid_and_of_its_class(message_type: MessageType) -> None:
    message = EXAMPLES[message_type]
    assert message.type == message_type.value
    assert isinstance(message, MESSAGE_CLASSES[message_type])
    assert parse(to_bytes(message)) == message


@pytest.mark.parametrize("message_type", ALL_TYPES)
def test_examples_are_fresh_objects_each_call(message_type: MessageType) -> None:
    assert example_messages()[message_type] == EXAMPLES[message_type]


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def edit(obj: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = obj
        for part in parents:
            target = target[part]
        target[last] = value

    return edit


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def edit(obj: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = obj
        for part in parents:
            target = target[part]
        del target[last]

    return edit


COMMON_INVALID: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("bad SOR", _set("recipient", "1234"), "recipient"),
    ("SOR as number", _set("recipient", 123456789012345), "recipient"),
    ("naive time", _set("time", "2026-11-26T09:30:00"), "time"),
    ("time as number", _set("time", 1764149400), "time"),
    ("missing time", _drop("time"), "time: Field required"),
    ("naive expiresat", _set("expiresat", "2026-11-26T09:30:00"), "expiresat"),
    ("wrong specversion", _set("specversion", "0.3"), "specversion"),
    ("missing specversion", _drop("specversion"), "specversion: Field required"),
    ("unknown field", _set("colour", "red"), "colour: Extra inputs are not permitted"),
    ("unknown data field", _set("data.colour", "red"), "data.colour: Extra inputs are not permitted"),
    ("source not urn:prik", _set("source", "https://example.dk"), "source"),
    ("source with bad tenant", _set("source", "urn:prik:A"), "source"),
    ("empty id", _set("id", ""), "id"),
    ("id too long", _set("id", "x" * 201), "id"),
    ("id with space", _set("id", "a b"), "id"),
    ("id that is a CPR", _set("id", "010190-1234"), "id: must not be a CPR number"),
    ("correlationid that is a CPR", _set("correlationid", "0101901234"), "correlationid: must not be a CPR"),
    ("subject holding a CPR", _set("subject", "patient 0101901234"), "subject: must not contain a CPR"),
    ("bad priority", _set("priority", "high"), "priority"),
    ("bad datacontenttype", _set("datacontenttype", "text/plain"), "datacontenttype"),
    ("data not an object", _set("data", [1, 2]), "data"),
    ("missing data", _drop("data"), "data: Field required"),
]


@pytest.mark.parametrize("message_type", ALL_TYPES)
@pytest.mark.parametrize(("name", "edit", "expected"), COMMON_INVALID, ids=[c[0] for c in COMMON_INVALID])
def test_common_invalid(
    message_type: MessageType, name: str, edit: Callable[[dict[str, Any]], None], expected: str
) -> None:
    obj = _as_dict(message_type)
    obj.setdefault("expiresat", "2026-11-26T10:00:00Z")
    edit(obj)
    error = _reason_of(obj)
    assert error.stage == "validate", name
    assert expected in error.reason


TYPE_INVALID: list[tuple[MessageType, Callable[[dict[str, Any]], None], str]] = [
    (MessageType.VIDEO_QUEUE, _drop("recipient"), "recipient is required"),
    (MessageType.VIDEO_QUEUE, _set("recipient", None), "recipient is required"),
    (
        MessageType.VIDEO_QUEUE,
        _set("data.position", 0),
        "data.position: Input should be greater than or equal to 1",
    ),
    (MessageType.VIDEO_QUEUE, _set("data.position", "3"), "data.position"),
    (MessageType.VIDEO_QUEUE, _set("data.position", 2.0), "data.position"),
    (MessageType.VIDEO_QUEUE, _set("data.event", "waiting"), "data.event"),
    (
        MessageType.VIDEO_QUEUE,
        _set("data.consultation_url", "http://video.example.dk/r"),
        "data.consultation_url",
    ),
    (MessageType.VIDEO_QUEUE, _set("data.waiting_since", "2026-11-26T09:00:00"), "data.waiting_since"),
    (MessageType.VIDEO_QUEUE, _set("data.patient", {"cpr": "3213990000"}), "data.patient.cpr"),
    (MessageType.VIDEO_QUEUE, _set("data.patient", {"cpr": "3002901234"}), "valid day and month"),
    (MessageType.VIDEO_QUEUE, _set("data.patient", {"cpr": "0113901234"}), "valid day and month"),
    (MessageType.VIDEO_QUEUE, _set("data.patient", {"cpr": "01019012345"}), "10 digits"),
    (MessageType.REFERRAL_STATUS, _drop("recipient"), "recipient is required"),
    (MessageType.REFERRAL_STATUS, _set("data.municipality_code", "100"), "data.municipality_code"),
    (MessageType.REFERRAL_STATUS, _set("data.municipality_code", "0101"), "data.municipality_code"),
    (MessageType.REFERRAL_STATUS, _set("data.municipality_code", 101), "data.municipality_code"),
    (MessageType.REFERRAL_STATUS, _set("data.status", "pending"), "data.status"),
    (MessageType.REFERRAL_STATUS, _drop("data.patient"), "data.patient: Field required"),
    (MessageType.REFERRAL_STATUS, _set("data.offer", ""), "data.offer"),
    (MessageType.TASK_REQUEST, _drop("recipient"), "recipient is required"),
    (
        MessageType.TASK_REQUEST,
        _set("data.task_id", "not-a-uuid"),
        "data.task_id: Input should be a valid UUID",
    ),
    (MessageType.TASK_REQUEST, _set("data.due", "2026-11-28T09:00:00"), "data.due"),
    (MessageType.TASK_STATUS, _set("data.status", "done"), "data.status"),
    (MessageType.TASK_STATUS, _drop("data.task_id"), "data.task_id: Field required"),
    (MessageType.RECEIPT, _set("data.outcome", "lost"), "data.outcome"),
    (MessageType.RECEIPT, _set("data.attempts", -1), "data.attempts"),
    (MessageType.RECEIPT, _set("data.attempts", True), "data.attempts"),
    (MessageType.RECEIPT, _set("data.message_source", "minlaege-video"), "data.message_source"),
    (MessageType.RECEIPT, _set("data.at", "yesterday"), "data.at"),
]


@pytest.mark.parametrize(("message_type", "edit", "expected"), TYPE_INVALID)
def test_type_specific_invalid(
    message_type: MessageType, edit: Callable[[dict[str, Any]], None], expected: str
) -> None:
    obj = _as_dict(message_type)
    edit(obj)
    error = _reason_of(obj)
    assert error.stage == "validate"
    assert expected in error.reason
    assert "3213990000" not in error.reason
    assert "0101901234" not in error.reason


@pytest.mark.parametrize("message_type", [MessageType.TASK_STATUS, MessageType.RECEIPT])
def test_recipient_optional_on_statuses_and_receipts(message_type: MessageType) -> None:
    obj = _as_dict(message_type)
    obj.pop("recipient", None)
    assert parse(dumps(obj)).recipient is None


def test_router_source_and_optional_fields() -> None:
    obj = _as_dict(MessageType.RECEIPT)
    obj["subject"] = "receipt for a video-queue notice"
    obj["datacontenttype"] = "application/json; charset=utf-8"
    message = parse(dumps(obj))
    assert isinstance(message, Receipt)
    assert message.source == "urn:prik:router"
    assert message.subject == "receipt for a video-queue notice"


def test_unknown_and_missing_type() -> None:
    obj = _as_dict(MessageType.VIDEO_QUEUE)
    obj["type"] = "dk.prik.advisory.0101901234.v1"
    error = _reason_of(obj)
    assert error.reason == "type: unknown message type"
    assert "0101901234" not in error.reason
    del obj["type"]
    assert _reason_of(obj).reason == "type: Field required"
    obj["type"] = 7
    assert _reason_of(obj).reason == "type: unknown message type"


def test_models_are_frozen() -> None:
    message = EXAMPLES[MessageType.VIDEO_QUEUE]
    with pytest.raises(ValueError, match="frozen"):
        message.id = "other"


# --- expiry -------------------------------------------------------------------------------


def test_video_queue_default_expiry() -> None:
    video = EXAMPLES[MessageType.VIDEO_QUEUE]
    assert isinstance(video, VideoQueueNotice)
    without = video.model_copy(update={"expiresat": None})
    assert effective_expiry(without) == video.time + VIDEO_QUEUE_DEFAULT_TTL
    assert timedelta(minutes=15) == VIDEO_QUEUE_DEFAULT_TTL
    explicit = video.time + timedelta(minutes=1)
    assert effective_expiry(video.model_copy(update={"expiresat": explicit})) == explicit


def test_other_types_have_no_default_expiry() -> None:
    for message_type in ALL_TYPES:
        if message_type is MessageType.VIDEO_QUEUE:
            continue
        message = EXAMPLES[message_type]
        assert message.expiresat is None
        assert effective_expiry(message) is None
        assert not is_expired(message, datetime(9999, 1, 1, tzinfo=UTC))


def test_is_expired() -> None:
    video = EXAMPLES[MessageType.VIDEO_QUEUE].model_copy(update={"expiresat": None})
    start = video.time
    assert not is_expired(video, start + timedelta(minutes=14, seconds=59))
    assert is_expired(video, start + timedelta(minutes=15))
    with pytest.raises(ValueError, match="aware"):
        is_expired(video, datetime(2026, 1, 1))  # noqa: DTZ001  a naive time is the point


# --- kinds and schemas -------------------------------------------------------------------


def test_kind_of() -> None:
    assert kind_of(MessageType.VIDEO_QUEUE) == "advisory"
    assert kind_of("dk.prik.advisory.referral-status.v1") == "advisory"
    assert kind_of(MessageType.TASK_REQUEST) == "task"
    assert kind_of(MessageType.TASK_STATUS) == "task"
    assert kind_of(MessageType.RECEIPT) == "platform"
    with pytest.raises(ValueError, match="MessageType"):
        kind_of("dk.prik.nope.v1")


def test_json_schemas() -> None:
    schemas = json_schemas()
    assert set(schemas) == {t.value for t in MessageType}
    for type_string, schema in schemas.items():
        assert schema["$id"] == f"urn:prik:schema:{type_string}"
        assert schema["properties"]["type"]["const"] == type_string
        assert schema["additionalProperties"] is False
        orjson.dumps(schema)
    video = schemas[MessageType.VIDEO_QUEUE.value]
    assert "recipient" in video["properties"]
    assert video["$defs"]["Patient"]["properties"]["cpr"]["type"] == "string"


def test_schema_filename() -> None:
    assert schema_filename(MessageType.RECEIPT) == "dk.prik.receipt.v1.schema.json"
    assert schema_filename("dk.prik.task.status.v1") == "dk.prik.task.status.v1.schema.json"


def test_task_status_update_class() -> None:
    assert isinstance(EXAMPLES[MessageType.TASK_STATUS], TaskStatusUpdate)
