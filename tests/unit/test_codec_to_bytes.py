"""`to_bytes` (orjson from the models' fields) writes exactly what pydantic-core wrote before.

The oracle is the earlier implementation itself: `to_json(exclude_none=True)` of
the message's own serializer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import Message, MessageType, TaskRequest, VideoQueueNotice, example_messages, parse, to_bytes
from tests.unit.test_contracts_parse import messages

FUZZ = settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
EXAMPLES = example_messages()


def _oracle(msg: Message) -> bytes:
    return msg.__pydantic_serializer__.to_json(msg, exclude_none=True)


def _with(msg: Message, **fields: Any) -> Message:
    """`msg` validated again with more fields: the only way a message gets them."""
    return type(msg).model_validate({**msg.__dict__, **fields})


# Text a sender may put in free-text fields: controls, quotes, backslashes, any plane.
_FREE_TEXT = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40) | st.sampled_from(
    ['"', "\\", "\x00\x1f\x7f", "\u2028\u2029", "æøå ÆØÅ", "\U0001f600", "</script>", "a\tb\nc\rd\x08e\x0cf"]
)
_TRACE = st.builds(
    lambda a, b: f"00-{a:032x}-{b:016x}-01", st.integers(1, 2**128 - 1), st.integers(1, 2**64 - 1)
)
_SUBJECTS = st.text(st.characters(codec="utf-8", exclude_categories=["Cc"]), min_size=1, max_size=40).filter(
    lambda s: not any(c.isdigit() for c in s)
)
_EXTENSIONS = st.fixed_dictionaries(
    {},
    optional={
        "traceparent": _TRACE,
        "tracestate": st.from_regex(r"[a-z]{1,8}=[a-z0-9]{1,16}", fullmatch=True),
        "partitionkey": st.from_regex(r"[!-~]{1,40}", fullmatch=True).filter(lambda s: not s.isdigit()),
        "subject": _SUBJECTS,
    },
)


@FUZZ
@given(messages, _EXTENSIONS)
def test_to_bytes_writes_what_pydantic_wrote(message: Message, extensions: dict[str, Any]) -> None:
    message = _with(message, **extensions)
    assert to_bytes(message) == _oracle(message)


@FUZZ
@given(st.sampled_from(list(MessageType)), _FREE_TEXT, st.integers(0, 999_999))
def test_free_text_and_microseconds_are_written_alike(kind: MessageType, text: str, micros: int) -> None:
    message = EXAMPLES[kind]
    message = _with(message, subject=None, time=message.time.replace(microsecond=micros))
    if isinstance(message, TaskRequest):
        message = _with(message, data=message.data.model_copy(update={"description": text}))
    assert to_bytes(message) == _oracle(message)


def test_what_orjson_cannot_write_takes_pydantics_way() -> None:
    video = EXAMPLES[MessageType.VIDEO_QUEUE]
    assert isinstance(video, VideoQueueNotice)
    # An integer over 64 bits is valid for `position` (no upper bound); orjson refuses it.
    huge = _with(video, data=video.data.model_copy(update={"position": 2**70}))
    assert to_bytes(huge) == _oracle(huge)
    assert b'"position":1180591620717411303424' in to_bytes(huge)
    # A lone surrogate cannot be UTF-8: both ways refuse it the same.
    request = EXAMPLES[MessageType.TASK_REQUEST]
    odd = request.model_copy(update={"data": request.data.model_copy(update={"description": "\ud800"})})
    outcomes: list[tuple[str, object]] = []
    for encode in (to_bytes, _oracle):
        try:
            outcomes.append(("ok", encode(odd)))
        except Exception as exc:  # noqa: BLE001  the kind of failure is what is compared
            outcomes.append(("error", type(exc).__name__))
    assert outcomes[0][0] == outcomes[1][0]


def test_unvalidated_copies_are_written_alike() -> None:
    # model_copy(update=...) skips validation: the router sets a recipient this way.
    video = EXAMPLES[MessageType.VIDEO_QUEUE]
    east = timezone(timedelta(hours=2))
    for update in (
        {"recipient": "98765432109"},
        {"expiresat": None},
        {"time": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=east)},
        {"time": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)},
        {"time": datetime(2026, 1, 2, 3, 4, 5)},  # noqa: DTZ001  what a naive time is written as
    ):
        copy = video.model_copy(update=update)
        assert to_bytes(copy) == _oracle(copy)


@FUZZ
@given(messages, st.sampled_from(["envelope", "data", "patient"]), st.sampled_from(["cpr", "recipent", "x"]))
def test_keys_a_copy_adds_are_left_out_alike(message: Message, level: str, key: str) -> None:
    # model_copy(update=...) stores a key that is no field (a typo, or a CPR put at the
    # wrong level) in the model; pydantic never writes it, and orjson must not either.
    cpr = "0101901234"
    if level == "envelope":
        copy = message.model_copy(update={key: cpr})
    else:
        data = message.data
        patient = getattr(data, "patient", None)
        if level == "patient" and patient is not None:
            # `cpr` is the patient's own field; "number" is not.
            extra = "number" if key == "cpr" else key
            data = data.model_copy(update={"patient": patient.model_copy(update={extra: cpr})})
        else:
            data = data.model_copy(update={key: cpr})
        copy = message.model_copy(update={"data": data})
    assert to_bytes(copy) == _oracle(copy)
    assert to_bytes(copy).count(cpr.encode()) == to_bytes(message).count(cpr.encode())


# pydantic warns of the unexpected values it writes anyway; what it writes is compared.
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")
def test_data_of_another_message_type_is_written_alike() -> None:
    # pydantic writes a copy's data by the fields of the type's own data class (a receipt
    # carrying a referral's data gets "data":{}), never the patient of the other.
    for message in EXAMPLES.values():
        for other in EXAMPLES.values():
            copy = message.model_copy(update={"data": other.data})
            assert to_bytes(copy) == _oracle(copy)


def test_constructed_messages_are_written_alike() -> None:
    # model_construct skips validation: a required field can be missing.
    for message in EXAMPLES.values():
        fields = {name: value for name, value in message.__dict__.items() if name != "id"}
        constructed = type(message).model_construct(**fields)
        assert to_bytes(constructed) == _oracle(constructed)


@FUZZ
@given(messages)
def test_to_bytes_round_trips(message: Message) -> None:
    assert parse(to_bytes(message)) == message
