"""Bytes <-> messages: structured and binary CloudEvents over Kafka.

Every failure of `parse` is a `ParseError` whose reason is built only from field
names and fixed rule texts, never from payload values, so it is safe for logs,
dead-letter headers and receipts.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterable, Sequence
from typing import Any, Union, cast, get_args, get_origin

import orjson
from pydantic import BaseModel, ValidationError

from contracts.codec import dumps, loads
from contracts.envelope import DEFAULT_DATACONTENTTYPE, MESSAGE_CLASSES, Envelope, Message
from contracts.errors import ParseError
from contracts.headers import CE_PREFIX, CE_SPECVERSION, CONTENT_TYPE, normalise_headers
from contracts.identifiers import Patient, contains_cpr
from contracts.limits import MAX_MESSAGE_BYTES, MAX_VALUES, check_record, check_unique_members

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"

Headers = Sequence[tuple[str, bytes]]

_SAFE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
_NUMBER_RUN_RE = re.compile(r"[0-9]{6}-?[0-9]{4}")
# Longest value `_canonical` need not count: fewer than 2 * MAX_VALUES bytes hold at most MAX_VALUES values.
_SHORT = 2 * MAX_VALUES - 1
# A header value this short is within every header limit of `check_record`.
_SHORT_HEADER = 256
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


def _canonical(value: bytes, obj: Any) -> bool:  # noqa: ANN401  any decoded JSON value
    """True when `value` is exactly orjson's encoding of `obj` and holds too few values to need counting.

    Such bytes cannot repeat a key: they are the encoding of a decoded tree, where
    every key appears once. prik's own senders write exactly these bytes (`to_bytes`),
    so the common case costs one encode and compare instead of the token scan of
    `check_unique_members`, which every other input still gets. JSON values number
    at most one more than its commas and opening brackets together (each value but
    the first follows a comma or opens its container), so under `MAX_VALUES` of
    those the limit holds without walking the tree. Counting costs ~1 ns a byte, as
    much as the encode for a typical message, so short values skip it: n values
    take at least 2n - 1 bytes (a byte of its own each, and a comma or an opening
    bracket before each but the first), so `_SHORT` bytes hold at most `MAX_VALUES`.
    """
    if len(value) > _SHORT and value.count(b",") + value.count(b"{") + value.count(b"[") >= MAX_VALUES:
        return False
    try:
        return orjson.dumps(obj) == value
    except orjson.JSONEncodeError:
        # Nesting deeper than orjson writes, an integer wider than 64 bits: the slow path says.
        return False


def _json(value: bytes | bytearray | memoryview | str) -> Any:  # noqa: ANN401  JSON may be any value
    obj = loads(value)
    if isinstance(value, bytearray):
        value = bytes(value)
    elif not isinstance(value, bytes):
        # A memoryview or str that is JSON: the codec `parse` must decide as (before issue 12)
        # failed to count commas in it, and `parse` refused it as unreadable, unprefixed in binary mode.
        msg = "JSON in a memoryview or str"
        raise TypeError(msg)
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


def _structured(value: bytes, max_bytes: int) -> Message:
    """`_parse` for a record without headers: the same checks in the same order, fewer calls between them.

    Each Python call costs ~0.1 us, as much as a small check; a prik sender's
    record (bytes, no headers) skips the header steps and the wrappers.
    """
    if len(value) > max_bytes:
        check_record(None, value, (), max_bytes=max_bytes)
    obj = loads(value)
    if not _canonical(value, obj):
        check_unique_members(value, obj)
    if type(obj) is not dict:
        msg = "message is not a JSON object"
        raise ParseError(msg, stage="parse")
    return _validate(obj)


def _structured_for_certain(headers: object) -> bool:
    """No headers, or one short `content-type` header, as prik's senders and router write.

    Binary mode needs a `ce_specversion` header, and one short header is within every
    header limit, so `_structured` decides such a record exactly as `_parse` would.
    """
    if headers is None:
        return True
    if not isinstance(headers, list | tuple):
        return False
    if len(headers) != 1:
        return not headers
    pair = headers[0]
    return (
        type(pair) is tuple
        and len(pair) == 2
        and pair[0] == CONTENT_TYPE
        and type(pair[1]) is bytes
        and len(pair[1]) <= _SHORT_HEADER
    )


def parse(
    value: bytes | None, headers: Iterable[object] | None = None, *, max_bytes: int = MAX_MESSAGE_BYTES
) -> Message:
    """Read one Kafka record as a prik message; binary mode when a `ce_specversion` header is present.

    Headers are taken as Kafka clients hand them over: null values count as absent.
    A value over `max_bytes` is refused before it is read. Raises only `ParseError`,
    whatever the bytes and headers.
    """
    try:
        # Without a ce_specversion header there is no binary mode: a prik sender's record takes the short way.
        if type(value) is bytes and _structured_for_certain(headers):
            return _structured(value, max_bytes)
        return _parse(value if value is not None else b"", normalise_headers(headers), max_bytes)
    except ParseError:
        raise
    except Exception:  # noqa: BLE001  the promise is "only ParseError", even for a bug or odd input
        msg = "message could not be read"
        raise ParseError(msg, stage="parse") from None


def _dump(msg: Envelope) -> dict[str, Any]:
    return msg.model_dump(mode="json", exclude_none=True)


def _shape(cls: type[BaseModel]) -> tuple[int, tuple[str, ...]]:
    """How many fields `cls` has, and the nullable ones: the only ones `exclude_none` can drop."""
    names = []
    for name, field in cls.model_fields.items():
        annotation = field.annotation
        if get_origin(annotation) in {Union, types.UnionType} and type(None) in get_args(annotation):
            names.append(name)
    return len(cls.model_fields), tuple(names)


# Every model a message holds, with its shape. A model not listed (a subclass nobody
# registered) makes `_fields` raise, and `to_bytes` takes pydantic's way.
_SHAPES: dict[type, tuple[int, tuple[str, ...]]] = {Patient: _shape(Patient)}
# The data class of each message class: pydantic writes a copy's other data by this one's fields.
_DATA: dict[type, type] = {}
for _cls in MESSAGE_CLASSES.values():
    _SHAPES[_cls] = _shape(_cls)
    _data = _cls.model_fields["data"].annotation
    if isinstance(_data, type) and issubclass(_data, BaseModel):
        _SHAPES[_data] = _shape(_data)
        _DATA[_cls] = _data


def _fields(model: BaseModel, cls: type) -> dict[str, Any]:
    """A model's fields in model order, without the None ones.

    LookupError for a model type not listed or not `cls` (a copy can put another
    message type's data in a message; pydantic writes only the fields of the type's
    own data class), and for a model holding more or fewer keys than fields:
    `model_copy(update=...)` stores a key that is no field (a typo such as `cpr`
    for the envelope), which pydantic leaves out; `model_construct` leaves one out.
    """
    fields = model.__dict__.copy()
    count, nullable = _SHAPES[cls]
    if len(fields) != count or type(model) is not cls:
        raise LookupError
    for name in nullable:
        if fields[name] is None:
            del fields[name]
    return fields


def to_bytes(msg: Message) -> bytes:
    """The structured-mode record value (`application/cloudevents+json`); None fields are left out.

    Byte for byte what pydantic-core writes (`to_json(exclude_none=True)`: compact,
    UTF-8, fields in model order, times in UTC with 'Z'), in two thirds of its time:
    the fields go to orjson as a dict per model (a message is an envelope, its data
    and at most a patient). What orjson cannot write (a model type not listed, an
    integer over 64 bits, a lone surrogate) goes pydantic-core's way, and so does
    an unvalidated copy holding a key that is no field or another type's data. A copy holding a value no
    validation lets through is written differently, not caught because catching
    it costs a third of this function or more: None in a field without None
    (orjson writes null, which `parse` refuses; pydantic leaves the field out,
    read back as its default or refused as missing), a time offset with seconds
    (orjson rounds it to whole minutes, pydantic cuts the seconds), True in an
    int field (orjson writes true, pydantic 1). Copy with valid values only.
    """
    try:
        fields = _fields(msg, type(msg))
        data = fields["data"] = _fields(fields["data"], _DATA[type(msg)])
        patient = data.get("patient")
        if patient is not None:
            data["patient"] = patient = _fields(patient, Patient)
            patient["cpr"] = patient["cpr"].value
        return orjson.dumps(fields, option=orjson.OPT_UTC_Z)
    except (LookupError, AttributeError, TypeError):
        # orjson.JSONEncodeError is a TypeError.
        return msg.__pydantic_serializer__.to_json(msg, exclude_none=True)


def to_binary(msg: Message) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The binary-mode record: (value = the data JSON, headers = `ce_*` attributes and content-type)."""
    attributes = _dump(msg)
    data = attributes.pop("data")
    content_type = attributes.pop("datacontenttype", DEFAULT_DATACONTENTTYPE)
    headers = [(CE_PREFIX + name, str(value).encode()) for name, value in attributes.items()]
    headers.append((CONTENT_TYPE, str(content_type).encode()))
    return dumps(data), headers
