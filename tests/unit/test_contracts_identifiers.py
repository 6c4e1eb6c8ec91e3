"""Identifier rules, CPR redaction and UTC date-times."""

from __future__ import annotations

import copy
import pickle
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from contracts import (
    Cpr,
    HttpsUrl,
    Kommunekode,
    MessageType,
    Patient,
    Sor,
    TenantId,
    UtcDatetime,
    Ydernummer,
    contains_cpr,
    dumps,
    example_messages,
    is_cpr,
    parse,
    rfc3339,
    to_bytes,
)

CPR = "0101901234"


def _adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp, config=ConfigDict(hide_input_in_errors=True))


@pytest.mark.parametrize("value", ["01019012", "1234567890123456789", "12345678901a", "", " 12345678901"])
def test_sor_refuses(value: str) -> None:
    with pytest.raises(ValidationError):
        _adapter(Sor).validate_python(value)


@pytest.mark.parametrize("value", ["12345678901", "123456789012345678", "000000000000000"])
def test_sor_accepts(value: str) -> None:
    assert _adapter(Sor).validate_python(value) == value


def test_sor_refuses_non_ascii_digits() -> None:
    with pytest.raises(ValidationError):
        _adapter(Sor).validate_python("١٢٣٤٥٦٧٨٩٠١")


def test_sor_refuses_int() -> None:
    with pytest.raises(ValidationError):
        _adapter(Sor).validate_python(12345678901)


@pytest.mark.parametrize("value", ["101", "860", "461"])
def test_kommunekode_accepts(value: str) -> None:
    assert _adapter(Kommunekode).validate_python(value) == value


@pytest.mark.parametrize("value", ["100", "861", "999", "0101", "10", "abc"])
def test_kommunekode_refuses(value: str) -> None:
    with pytest.raises(ValidationError):
        _adapter(Kommunekode).validate_python(value)


def test_kommunekode_refuses_int() -> None:
    with pytest.raises(ValidationError):
        _adapter(Kommunekode).validate_python(101)


def test_ydernummer_keeps_leading_zeros() -> None:
    assert _adapter(Ydernummer).validate_python("001234") == "001234"
    with pytest.raises(ValidationError):
        _adapter(Ydernummer).validate_python("12a")


@pytest.mark.parametrize("value", ["minlaege-video", "kommune-0101", "lps-xmo", "ab"])
def test_tenant_id_accepts(value: str) -> None:
    assert _adapter(TenantId).validate_python(value) == value


@pytest.mark.parametrize("value", ["a", "-abc", "Abc", "ab_c", "a" * 64, "ab\n"])
def test_tenant_id_refuses(value: str) -> None:
    with pytest.raises(ValidationError):
        _adapter(TenantId).validate_python(value)


def test_https_url() -> None:
    url = "https://video.example.dk/room/1?x=1"
    assert _adapter(HttpsUrl).validate_python(url) == url
    for bad in ["http://video.example.dk/", "https://", "https:///path", "ftp://x.dk", "https://a b.dk/"]:
        with pytest.raises(ValidationError):
            _adapter(HttpsUrl).validate_python(bad)


# --- CPR ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "digits"),
    [("0101901234", "0101901234"), ("010190-1234", "0101901234"), ("2902001234", "2902001234")],
)
def test_cpr_accepts_and_normalises(given: str, digits: str) -> None:
    assert Cpr(given).value == digits


@pytest.mark.parametrize(
    "value",
    [
        "3213990000",
        "0013990000",
        "3101990000x",
        "3002001234",
        "3104001234",
        "0100001234",
        "123456789",
        "01019-01234",
    ],
)
def test_cpr_refuses_without_echo(value: str) -> None:
    with pytest.raises(ValueError, match="CPR") as info:
        Cpr(value)
    assert value not in str(info.value)
    with pytest.raises(ValidationError) as v_info:
        Patient.model_validate({"cpr": value})
    assert value not in str(v_info.value)
    assert value not in repr(v_info.value)


def test_cpr_refuses_non_string_in_model() -> None:
    with pytest.raises(ValidationError, match="CPR must be a string"):
        Patient.model_validate({"cpr": 101901234})


def test_cpr_does_not_modulus_11_check() -> None:
    # 0101901234 fails modulus 11; it is still valid since 2007.
    assert Cpr("0101901234").value == "0101901234"


def test_cpr_never_prints_itself() -> None:
    cpr = Cpr(CPR)
    patient = Patient(cpr=cpr)
    texts = [
        str(cpr),
        repr(cpr),
        f"{cpr}",
        f"{cpr!r}",
        f"{cpr:>20}",
        "{}".format(cpr),  # noqa: UP032  str.format is a separate code path
        "%s" % cpr,  # noqa: UP031  %-formatting is a separate code path
        str(patient),
        repr(patient),
        f"{patient}",
        str(patient.model_dump()),
    ]
    for text in texts:
        assert CPR not in text
        assert "010190" not in text


def test_cpr_serialises_to_digits_for_delivery() -> None:
    patient = Patient(cpr=Cpr("010190-1234"))
    assert patient.model_dump(mode="json") == {"cpr": CPR}
    assert dumps(patient) == b'{"cpr":"0101901234"}'
    assert Patient.model_validate_json(patient.model_dump_json()) == patient


def test_cpr_equality_hash_copy_pickle() -> None:
    a, b = Cpr(CPR), Cpr("010190-1234")
    assert a == b
    assert hash(a) == hash(b)
    assert a != Cpr("0201901234")
    assert a != CPR
    assert copy.deepcopy(a) == a
    assert pickle.loads(pickle.dumps(a)) == a  # noqa: S301  round-tripping our own object
    with pytest.raises(AttributeError):
        a._value = "x"


def test_is_cpr() -> None:
    assert is_cpr("0101901234")
    assert is_cpr("010190-1234")
    assert not is_cpr("3213990000")
    assert not is_cpr("x0101901234")


def test_uuid_with_cpr_shaped_run_is_a_valid_id() -> None:
    obj = orjson.loads(to_bytes(example_messages()[MessageType.TASK_STATUS]))
    obj["id"] = obj["correlationid"] = "ab010190-1234-4a6e-9b1d-ab0101901234"
    assert parse(dumps(obj)).id == obj["id"]


def test_contains_cpr() -> None:
    assert contains_cpr("patient 010190-1234 waits")
    assert contains_cpr("0101901234")
    assert not contains_cpr("3213990000")
    assert not contains_cpr("12345678901")
    assert not contains_cpr("7d1c6f6e-2f0e-4a6e-9b1d-301019012345")


# --- UTC date-times ------------------------------------------------------------------------


class _Stamp(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)
    at: UtcDatetime


def test_utc_datetime_normalises_and_keeps_microseconds() -> None:
    stamp = _Stamp.model_validate({"at": "2026-11-26T10:30:00.123456+01:00"})
    assert stamp.at == datetime(2026, 11, 26, 9, 30, 0, 123456, tzinfo=UTC)
    assert stamp.at.tzinfo is UTC
    assert stamp.model_dump(mode="json") == {"at": "2026-11-26T09:30:00.123456Z"}
    assert _Stamp.model_validate_json(stamp.model_dump_json()) == stamp


def test_utc_datetime_refuses_naive_and_numbers() -> None:
    naive = datetime(2026, 11, 26, 9, 30)  # noqa: DTZ001  a naive time is the point
    for bad in [
        "2026-11-26T09:30:00",
        naive,
        1764149400,
        "1764149400",
        1.5,
        "2026-11-26",
        "2026-11-26 09:30Z",
    ]:
        with pytest.raises(ValidationError):
            _Stamp.model_validate({"at": bad})


def test_utc_datetime_out_of_range() -> None:
    with pytest.raises(ValidationError, match="years 2000-2099"):
        _Stamp.model_validate({"at": "0001-01-01T00:00:00+01:00"})


def test_rfc3339() -> None:
    east = timezone(timedelta(hours=2))
    assert rfc3339(datetime(2026, 1, 2, 5, 4, 3, tzinfo=east)) == "2026-01-02T03:04:03Z"
    assert rfc3339(datetime(2026, 1, 2, 3, 4, 3, 7, tzinfo=UTC)) == "2026-01-02T03:04:03.000007Z"
