"""Bytes <-> messages: round trips, binary mode, fuzzing, and no CPR in any error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import (
    STRUCTURED_CONTENT_TYPE,
    Cpr,
    Message,
    MessageType,
    Outcome,
    ParseError,
    Patient,
    Priority,
    Receipt,
    ReceiptData,
    ReferralStatus,
    ReferralStatusData,
    ReferralStatusNotice,
    TaskRequest,
    TaskRequestData,
    TaskStatus,
    TaskStatusData,
    TaskStatusUpdate,
    VideoQueueData,
    VideoQueueEvent,
    VideoQueueNotice,
    contains_cpr,
    dumps,
    example_messages,
    is_cpr,
    parse,
    to_binary,
    to_bytes,
)

EXAMPLES = example_messages()
ALL_TYPES = list(MessageType)
EXAMPLE_CPR = "0101901234"
OTHER_PATIENT = Patient(cpr=Cpr("3112991234"))
FUZZ = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# --- strategies ---------------------------------------------------------------------------

_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@st.composite
def cpr_texts(draw: st.DrawFn) -> str:
    month = draw(st.integers(1, 12))
    day = draw(st.integers(1, _DAYS[month - 1]))
    year = draw(st.integers(0, 99))
    serial = draw(st.integers(0, 9999))
    dash = "-" if draw(st.booleans()) else ""
    return f"{day:02d}{month:02d}{year:02d}{dash}{serial:04d}"


sors = st.from_regex(r"[0-9]{11,18}", fullmatch=True)
tenants = st.from_regex(r"[a-z0-9][a-z0-9-]{1,30}", fullmatch=True)
sources = tenants.map(lambda t: f"urn:prik:{t}")
references = st.from_regex(r"[!-~]{1,60}", fullmatch=True)
ids = st.uuids().map(str) | references.filter(lambda s: not is_cpr(s))
texts = st.text(min_size=1, max_size=60)
subjects = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=60).filter(
    lambda s: not contains_cpr(s)
)
offsets = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))])
# hypothesis takes naive bounds and attaches the zones itself.
moments = st.datetimes(
    # DESIGN.md bounds times to the years 2000-2099; a day inside them leaves room for the offsets.
    min_value=datetime(2000, 1, 2),  # noqa: DTZ001  naive bound, see above
    max_value=datetime(2099, 12, 30),  # noqa: DTZ001  naive bound, see above
    timezones=offsets,
)
patients = st.builds(Patient, cpr=cpr_texts().map(Cpr))
urls = st.from_regex(
    r"https://[a-z0-9]{1,12}(\.[a-z]{2,6}){1,2}(/[A-Za-z0-9._~%-]{0,20}){0,3}", fullmatch=True
)
priorities = st.sampled_from(Priority)


def _envelope(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": ids,
        "source": sources,
        "time": moments,
        "expiresat": st.none() | moments,
        "correlationid": st.none() | ids,
        "priority": priorities,
        "subject": st.none() | subjects,
        "datacontenttype": st.sampled_from(["application/json", "application/json; charset=utf-8"]),
    }
    base.update(overrides)
    return base


video_queue = st.builds(
    VideoQueueNotice,
    recipient=sors,
    data=st.builds(
        VideoQueueData,
        queue_entry_id=references,
        event=st.sampled_from(VideoQueueEvent),
        patient=st.none() | patients,
        position=st.none() | st.integers(1, 10_000),
        waiting_since=moments,
        consultation_url=st.none() | urls,
    ),
    **_envelope(),
)
referral_status = st.builds(
    ReferralStatusNotice,
    recipient=sors,
    data=st.builds(
        ReferralStatusData,
        referral_id=references,
        municipality_code=st.integers(101, 860).map(str),
        offer=texts,
        status=st.sampled_from(ReferralStatus),
        reason=st.none() | texts,
        patient=patients,
    ),
    **_envelope(),
)
task_request = st.builds(
    TaskRequest,
    recipient=sors,
    data=st.builds(
        TaskRequestData,
        task_id=st.uuids(),
        code=references,
        description=st.none() | texts,
        patient=st.none() | patients,
        due=st.none() | moments,
    ),
    **_envelope(),
)
task_status = st.builds(
    TaskStatusUpdate,
    recipient=st.none() | sors,
    data=st.builds(
        TaskStatusData,
        task_id=st.uuids(),
        status=st.sampled_from(TaskStatus),
        reason=st.none() | texts,
        business_status=st.none() | texts,
    ),
    **_envelope(),
)
receipt = st.builds(
    Receipt,
    recipient=st.none() | sors,
    data=st.builds(
        ReceiptData,
        message_id=ids,
        message_source=sources,
        message_type=st.sampled_from([t.value for t in MessageType]) | references,
        recipient=st.none() | sors,
        outcome=st.sampled_from(Outcome),
        reason=st.none() | texts,
        attempts=st.integers(0, 1000),
        at=moments,
    ),
    **_envelope(),
)
messages: st.SearchStrategy[Message] = st.one_of(
    video_queue, referral_status, task_request, task_status, receipt
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
header_names = st.sampled_from(
    ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_recipient", "ce_expiresat",
     "ce_priority", "ce_subject", "ce_data", "CE_SPECVERSION", "content-type", "ce_datacontenttype",
     "traceparent", "ce_0101901234"]
) | st.text(max_size=12)  # fmt: skip
header_values = st.binary(max_size=40) | st.sampled_from(
    [
        b"1.0",
        b"x",
        b"urn:prik:abc",
        b"dk.prik.task.status.v1",
        b"2026-11-26T09:30:00Z",
        b"application/json",
        b"\xff",
    ]
)
header_lists = st.lists(st.tuples(header_names, header_values), max_size=12)


# --- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("message_type", ALL_TYPES)
def test_structured_round_trip(message_type: MessageType) -> None:
    message = EXAMPLES[message_type]
    value = to_bytes(message)
    assert parse(value) == message
    assert parse(value, [("content-type", STRUCTURED_CONTENT_TYPE.encode())]) == message
    assert parse(value, [("content-type", b"whatever"), ("traceparent", b"00-abc")]) == message


@pytest.mark.parametrize("message_type", ALL_TYPES)
def test_binary_round_trip(message_type: MessageType) -> None:
    message = EXAMPLES[message_type]
    value, headers = to_binary(message)
    assert ("ce_specversion", b"1.0") in headers
    assert ("content-type", b"application/json") in headers
    assert ("ce_type", message.type.encode()) in headers
    assert orjson.loads(value) == orjson.loads(to_bytes(message))["data"]
    assert parse(value, headers) == message
    # Header names are matched regardless of case; unrelated headers are ignored.
    shouted = [(name.upper(), raw) for name, raw in headers] + [("traceparent", b"\xff")]
    assert parse(value, shouted) == message


def test_binary_headers_never_carry_cpr() -> None:
    for message in EXAMPLES.values():
        _, headers = to_binary(message)
        for name, raw in headers:
            assert EXAMPLE_CPR not in name
            assert EXAMPLE_CPR.encode() not in raw


def test_to_bytes_is_plain_json_with_real_cpr_and_no_nulls() -> None:
    value = to_bytes(EXAMPLES[MessageType.REFERRAL_STATUS])
    obj = orjson.loads(value)
    assert obj["data"]["patient"] == {"cpr": EXAMPLE_CPR}
    assert EXAMPLE_CPR.encode() in value
    assert b"null" not in value
    assert "expiresat" not in obj
    assert obj["time"] == "2026-11-26T09:30:00Z"


def test_microseconds_and_offsets_survive() -> None:
    message = EXAMPLES[MessageType.TASK_STATUS]
    obj = orjson.loads(to_bytes(message))
    obj["time"] = "2026-11-26T11:30:00.000001+02:00"
    parsed = parse(dumps(obj))
    assert parsed.time == datetime(2026, 11, 26, 9, 30, 0, 1, tzinfo=UTC)
    assert orjson.loads(to_bytes(parsed))["time"] == "2026-11-26T09:30:00.000001Z"


@FUZZ
@given(messages)
def test_any_valid_message_round_trips(message: Message) -> None:
    assert parse(to_bytes(message)) == message
    value, headers = to_binary(message)
    assert parse(value, headers) == message


@FUZZ
@given(messages)
def test_no_cpr_in_text_of_any_message(message: Message) -> None:
    patient = getattr(message.data, "patient", None)
    if patient is None:
        return
    # Other fields may hold the same digits by chance; compare with a different CPR instead.
    other = message.model_copy(update={"data": message.data.model_copy(update={"patient": OTHER_PATIENT})})
    for show in (str, repr, "{}".format):
        assert show(message) == show(other)
        assert show(message.data) == show(other.data)
    assert repr(patient) == repr(OTHER_PATIENT)


# --- binary mode failures -------------------------------------------------------------------


def _binary(message_type: MessageType = MessageType.TASK_STATUS) -> tuple[bytes, list[tuple[str, bytes]]]:
    return to_binary(EXAMPLES[message_type])


def test_binary_non_utf8_header() -> None:
    value, headers = _binary()
    headers = [(n, b"\xff\xfe" if n == "ce_id" else v) for n, v in headers]
    with pytest.raises(ParseError, match="ce_id is not UTF-8") as info:
        parse(value, headers)
    assert info.value.stage == "parse"


def test_binary_duplicate_header() -> None:
    value, headers = _binary()
    with pytest.raises(ParseError, match="appears twice"):
        parse(value, [*headers, ("ce_id", b"other")])
    with pytest.raises(ParseError, match="appears twice"):
        parse(value, [*headers, ("content-type", b"application/json")])


def test_binary_bad_data_json() -> None:
    _, headers = _binary()
    with pytest.raises(ParseError, match=r"^data: not valid JSON \(line 1, column 1\)$") as info:
        parse(b"\x00nope", headers)
    assert info.value.stage == "parse"


def test_binary_conflicts_and_oddities() -> None:
    value, headers = _binary()
    with pytest.raises(ParseError, match="ce_data"):
        parse(value, [*headers, ("ce_data", b"{}")])
    with pytest.raises(ParseError, match="disagree"):
        parse(value, [*headers, ("ce_datacontenttype", b"text/plain")])
    with pytest.raises(ParseError, match="colour: Extra inputs are not permitted"):
        parse(value, [*headers, ("ce_colour", b"red")])
    with pytest.raises(ParseError, match=r"<name>: Extra inputs"):
        parse(value, [*headers, ("ce_0101901234", b"x")])
    # A header that is not a (name, bytes) pair, or has a null value, counts as absent.
    assert parse(value, [*headers, ("x",)]) == parse(value, headers)
    assert parse(value, [*headers, ("ce_subject", None)]).subject is None


# --- structured failures ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "not valid JSON (line 1, column 1)"),
        (b"{", "not valid JSON (line 1, column 2)"),
        (b'{"cpr": 0101901234}', "not valid JSON (line 1, column 9)"),
        (b"\xff\xfe", "not valid JSON (line 1, column 1)"),
        (b"[]", "message is not a JSON object"),
        (b'"0101901234"', "message is not a JSON object"),
        (b"null", "message is not a JSON object"),
    ],
)
def test_structured_parse_stage(value: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse(value)
    assert info.value.stage == "parse"
    assert info.value.reason == reason


def test_odd_inputs_are_parse_errors() -> None:
    for value in (None, 42, object()):
        with pytest.raises(ParseError):
            parse(value)  # type: ignore[arg-type]
    with pytest.raises(ParseError):
        parse(b"{}", 42)  # type: ignore[arg-type]
    with pytest.raises(ParseError):
        parse(b"{}", [42])


def test_many_errors_are_joined_and_capped() -> None:
    obj = orjson.loads(to_bytes(EXAMPLES[MessageType.VIDEO_QUEUE]))
    obj.update({"id": "", "source": "x", "time": "x", "priority": "x", "recipient": "x"})
    obj["data"].update({"position": 0, "event": "x", "waiting_since": "x", "queue_entry_id": ""})
    obj.update({f"extra_{i}": i for i in range(20)})
    with pytest.raises(ParseError) as info:
        parse(dumps(obj))
    reason = info.value.reason
    assert "; " in reason
    assert len(reason) <= 300
    assert reason.startswith("id: ")


# --- no CPR in any error -----------------------------------------------------------------------


def test_valid_cpr_with_other_field_invalid() -> None:
    obj = orjson.loads(to_bytes(EXAMPLES[MessageType.VIDEO_QUEUE]))
    obj["data"]["position"] = 0
    with pytest.raises(ParseError) as info:
        parse(dumps(obj))
    assert info.value.reason == "data.position: Input should be greater than or equal to 1"
    assert EXAMPLE_CPR not in str(info.value)


@pytest.mark.parametrize("cpr", ["3213990000", "321399-0000", "0101901234x", "01019012345", "9999999999"])
def test_invalid_cpr_not_echoed(cpr: str) -> None:
    obj = orjson.loads(to_bytes(EXAMPLES[MessageType.REFERRAL_STATUS]))
    obj["data"]["patient"]["cpr"] = cpr
    with pytest.raises(ParseError) as info:
        parse(dumps(obj))
    assert info.value.reason.startswith("data.patient.cpr: CPR must")
    assert cpr not in str(info.value)
    assert cpr[:6] not in str(info.value)


@pytest.mark.parametrize(
    "place",
    ["data.patient.0101901234", "data.0101901234", "0101901234", "data.patient.cpr.0101901234"],
)
def test_cpr_as_key_not_echoed(place: str) -> None:
    obj = orjson.loads(to_bytes(EXAMPLES[MessageType.REFERRAL_STATUS]))
    *parents, last = place.split(".")
    target = obj
    for part in parents:
        if not isinstance(target.get(part), dict):
            target[part] = {}
        target = target[part]
    target[last] = EXAMPLE_CPR
    with pytest.raises(ParseError) as info:
        parse(dumps(obj))
    assert EXAMPLE_CPR not in info.value.reason


@pytest.mark.parametrize("field", ["recipient", "id", "correlationid", "subject", "source", "time", "type"])
def test_cpr_in_envelope_field_not_echoed(field: str) -> None:
    obj = orjson.loads(to_bytes(EXAMPLES[MessageType.VIDEO_QUEUE]))
    obj[field] = EXAMPLE_CPR
    with pytest.raises(ParseError) as info:
        parse(dumps(obj))
    assert EXAMPLE_CPR not in info.value.reason


@FUZZ
@given(
    cpr=cpr_texts() | st.from_regex(r"[0-9]{10}", fullmatch=True),
    where=st.sampled_from(ALL_TYPES),
    garbage=json_values,
)
def test_no_cpr_in_reason_whatever_else_is_wrong(cpr: str, where: MessageType, garbage: Any) -> None:
    obj = orjson.loads(to_bytes(EXAMPLES[where]))
    obj["data"]["patient"] = {"cpr": cpr, "other": garbage}
    obj["data"][cpr] = garbage
    obj["recipient"] = cpr
    with pytest.raises(ParseError) as info:
        parse(dumps(obj))
    assert cpr not in info.value.reason
    assert cpr.replace("-", "") not in info.value.reason


# --- fuzz: nothing but ParseError ----------------------------------------------------------------


def _outcome(value: bytes, headers: list[tuple[str, bytes]] | None = None) -> Message | ParseError:
    """Parse, turning the one allowed failure into a value; anything else propagates and fails."""
    try:
        return parse(value, headers)
    except ParseError as exc:
        return exc


def _check_error(outcome: Message | ParseError) -> None:
    if isinstance(outcome, ParseError):
        assert outcome.stage in {"parse", "validate"}
        assert 0 < len(outcome.reason) <= 300


@FUZZ
@given(value=st.binary(max_size=300), headers=st.none() | header_lists)
def test_random_bytes_raise_only_parse_error(value: bytes, headers: list[tuple[str, bytes]] | None) -> None:
    _check_error(_outcome(value, headers))


@FUZZ
@given(where=st.sampled_from(ALL_TYPES), in_data=st.booleans(), key=st.text(max_size=12), junk=json_values)
def test_mutated_messages_raise_only_parse_error(
    where: MessageType, in_data: bool, key: str, junk: Any
) -> None:
    obj = orjson.loads(to_bytes(EXAMPLES[where]))
    (obj["data"] if in_data else obj)[key] = junk
    outcome = _outcome(dumps(obj))
    _check_error(outcome)
    if not isinstance(outcome, ParseError):
        assert parse(to_bytes(outcome)) == outcome


@FUZZ
@given(
    where=st.sampled_from(ALL_TYPES),
    extra=header_lists,
    drop=st.integers(0, 12),
    data=st.none() | json_values,
)
def test_mutated_binary_raises_only_parse_error(
    where: MessageType, extra: list[tuple[str, bytes]], drop: int, data: Any
) -> None:
    value, headers = to_binary(EXAMPLES[where])
    headers = headers[:drop] + extra + headers[drop + 1 :]
    if data is not None:
        value = dumps(data)
    _check_error(_outcome(value, headers))
