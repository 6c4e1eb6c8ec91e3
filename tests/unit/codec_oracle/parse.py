"""Bytes <-> messages: structured and binary CloudEvents over Kafka.

Every failure of `parse` is a `ParseError` whose reason is built only from field
names and fixed rule texts, never from payload values, so it is safe for logs,
dead-letter headers and receipts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, cast

import orjson
from pydantic import ValidationError

from contracts.codec import dumps, loads
from contracts.errors import ParseError
from contracts.headers import CE_PREFIX, CE_SPECVERSION, CONTENT_TYPE, normalise_headers
from contracts.limits import MAX_MESSAGE_BYTES, MAX_VALUES, check_record, check_unique_members
from tests.unit.codec_oracle.envelope import DEFAULT_DATACONTENTTYPE, MESSAGE_CLASSES, Envelope, Message
from tests.unit.codec_oracle.identifiers import contains_cpr

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"

Headers = Sequence[tuple[str, bytes]]

_SAFE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
_NUMBER_RUN_RE = re.compile(r"[0-9]{6}-?[0-9]{4}")
# A sender needs the first problems to fix, not a list as long as its mistake.
_MAX_REASONS = 3
# By the type's text: no enum is built per message.
_CLASSES = {t.value: cls for t, cls in MESSAGE_CLASSES.items()}
# pydantic texts for these types quote characters of the input.
_FIXED_TEXTS = {
    "uuid_parsing": "Input should be a valid UUID",
    "uuid_type": "Input should be a valid UUID",
    "union_tag_invalid": "unknown message type",
}


def _safe_name(name: object) -> str:
    if isinstance(name, int):
        return str(name)
    # Unknown keys and header names come from the payload: repeat only harmless ones.
    if isinstance(name, str) and _SAFE_NAME_RE.fullmatch(name) and not contains_cpr(name):
        return name
    return "<name>"


def _reason(exc: ValidationError) -> str:
    parts = []
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    for error in errors[:_MAX_REASONS]:
        loc = ".".join(_safe_name(part) for part in error["loc"])
        text = _FIXED_TEXTS.get(error["type"], error["msg"])
        parts.append(f"{loc}: {text}" if loc else text)
    if len(errors) > _MAX_REASONS:
        parts.append(f"and {len(errors) - _MAX_REASONS} more")
    # Last line of defence: no digit run shaped like a CPR leaves this module.
    return _NUMBER_RUN_RE.sub("<number>", "; ".join(parts))


def _text(name: str, value: object) -> str:
    if not isinstance(value, bytes | bytearray | memoryview):
        msg = f"header {_safe_name(name)} has no byte value"
        raise ParseError(msg, stage="parse")
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        msg = f"header {_safe_name(name)} is not UTF-8"
        raise ParseError(msg, stage="parse") from None


def _binary_attributes(headers: Headers) -> dict[str, Any] | None:
    """The CloudEvents attributes of a binary-mode record, or None for structured mode."""
    pairs = [(name.lower(), raw) for name, raw in headers]
    if not any(name == CE_SPECVERSION for name, _ in pairs):
        return None
    attributes: dict[str, Any] = {}
    content_type: str | None = None
    for name, raw in pairs:
        if name == CONTENT_TYPE:
            if content_type is not None:
                msg = "header content-type appears twice"
                raise ParseError(msg, stage="parse")
            content_type = _text(name, raw)
        elif name.startswith(CE_PREFIX):
            attribute = name.removeprefix(CE_PREFIX)
            if attribute in attributes:
                msg = f"header {_safe_name(name)} appears twice"
                raise ParseError(msg, stage="parse")
            if attribute == "data":
                msg = "header ce_data: data travels in the record value"
                raise ParseError(msg, stage="parse")
            attributes[attribute] = _text(name, raw)
    if content_type is not None:
        if attributes.get("datacontenttype", content_type) != content_type:
            msg = "headers content-type and ce_datacontenttype disagree"
            raise ParseError(msg, stage="parse")
        attributes["datacontenttype"] = content_type
    return attributes


def _validate(obj: dict[str, Any]) -> Message:
    # The model defaults specversion for senders' convenience; on the wire CloudEvents requires it.
    if "specversion" not in obj:
        msg = "specversion: Field required"
        raise ParseError(msg, stage="validate")
    type_ = obj.get("type")
    if type_ is None:
        msg = "type: Field required"
        raise ParseError(msg, stage="validate")
    cls = _CLASSES.get(type_) if isinstance(type_, str) else None
    if cls is None:
        msg = "type: unknown message type"
        raise ParseError(msg, stage="validate")
    try:
        # The class's validator itself: `model_validate` only adds a Python call around it.
        return cast("Message", cls.__pydantic_validator__.validate_python(obj))
    except ValidationError as exc:
        raise ParseError(_reason(exc), stage="validate") from None


def _canonical(value: bytes, obj: Any) -> bool:
    """True when `value` is exactly orjson's encoding of `obj` and holds too few values to need counting.

    Such bytes cannot repeat a key: they are the encoding of a decoded tree, where
    every key appears once. prik's own senders write exactly these bytes (`to_bytes`),
    so the common case costs one encode and compare instead of the token scan of
    `check_unique_members`, which every other input still gets. JSON values number
    at most one more than its commas and opening brackets together (each value but
    the first follows a comma or opens its container), so under `MAX_VALUES` of
    those the limit holds without walking the tree.
    """
    if value.count(b",") + value.count(b"{") + value.count(b"[") >= MAX_VALUES:
        return False
    try:
        return orjson.dumps(obj) == value
    except orjson.JSONEncodeError:
        # Nesting deeper than orjson writes, an integer wider than 64 bits: the slow path says.
        return False


def _json(value: bytes) -> Any:
    obj = loads(value)
    if not _canonical(value, obj):
        check_unique_members(value, obj)
    return obj


def _parse(value: bytes, headers: Headers, max_bytes: int) -> Message:
    check_record(None, value, headers, max_bytes=max_bytes)
    attributes = _binary_attributes(headers) if headers else None
    if attributes is None:
        obj = _json(value)
        if not isinstance(obj, dict):
            msg = "message is not a JSON object"
            raise ParseError(msg, stage="parse")
        return _validate(obj)
    try:
        data = _json(value)
    except ParseError as exc:
        msg = f"data: {exc.reason}"
        raise ParseError(msg, stage="parse") from None
    attributes["data"] = data
    return _validate(attributes)


def parse(
    value: bytes | None, headers: Iterable[object] | None = None, *, max_bytes: int = MAX_MESSAGE_BYTES
) -> Message:
    """Read one Kafka record as a prik message; binary mode when a `ce_specversion` header is present.

    Headers are taken as Kafka clients hand them over: null values count as absent.
    A value over `max_bytes` is refused before it is read. Raises only `ParseError`,
    whatever the bytes and headers.
    """
    try:
        return _parse(value if value is not None else b"", normalise_headers(headers), max_bytes)
    except ParseError:
        raise
    except Exception:  # noqa: BLE001  the promise is "only ParseError", even for a bug or odd input
        msg = "message could not be read"
        raise ParseError(msg, stage="parse") from None


def _dump(msg: Envelope) -> dict[str, Any]:
    return msg.model_dump(mode="json", exclude_none=True)


def to_bytes(msg: Message) -> bytes:
    """The structured-mode record value (`application/cloudevents+json`); None fields are left out.

    pydantic-core writes the JSON itself, byte for byte what `dumps(model_dump(mode="json"))`
    writes (compact, UTF-8, times in UTC with 'Z'), without a dict in between.
    """
    return msg.__pydantic_serializer__.to_json(msg, exclude_none=True)


def to_binary(msg: Message) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The binary-mode record: (value = the data JSON, headers = `ce_*` attributes and content-type)."""
    attributes = _dump(msg)
    data = attributes.pop("data")
    content_type = attributes.pop("datacontenttype", DEFAULT_DATACONTENTTYPE)
    headers = [(CE_PREFIX + name, str(value).encode()) for name, value in attributes.items()]
    headers.append((CONTENT_TYPE, str(content_type).encode()))
    return dumps(data), headers
