"""UtcDatetime's fast path (`datetime.fromisoformat`) decides exactly as pydantic's own parse did.

The reference is the earlier definition: a before-validator for the RFC 3339 shape,
pydantic's date-time parsing, an after-validator to UTC and the year bounds.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from hypothesis import given
from hypothesis import strategies as st
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ValidationError

from contracts.identifiers import UtcDatetime, _only_rfc3339_or_datetime, _to_utc

_Reference = Annotated[AwareDatetime, BeforeValidator(_only_rfc3339_or_datetime), AfterValidator(_to_utc)]


class _Old(BaseModel):
    at: _Reference


class _New(BaseModel):
    at: UtcDatetime


def _outcome(model: type[BaseModel], value: object) -> tuple[str, Any]:
    try:
        return ("ok", model.model_validate({"at": value}).model_dump()["at"])
    except ValidationError as exc:
        return (
            "refused",
            [(e["type"], e["msg"]) for e in exc.errors(include_url=False, include_input=False)],
        )


def _two(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(lambda n: f"{n:02d}")


# Components around and beyond their valid ranges, so both paths meet bad dates too.
_TEXT = st.builds(
    lambda y, mo, d, t, h, mi, s, frac, zone: f"{y:04d}-{mo}-{d}{t}{h}:{mi}:{s}{frac}{zone}",
    st.integers(0, 9999),
    _two(0, 13),
    _two(0, 32),
    st.sampled_from(["T", "t", " "]),
    _two(0, 25),
    _two(0, 61),
    _two(0, 61),
    st.sampled_from(["", ".5", ".123", ".123456", ".1234567", ".123456789"]),
    st.one_of(
        st.sampled_from(["Z", "z", "", "+00:00", "-00:00", "+0100"]),
        st.builds(lambda sign, h, m: f"{sign}{h}:{m}", st.sampled_from("+-"), _two(0, 25), _two(0, 61)),
    ),
)


# Mostly valid: what senders write, with 30 February and such now and then.
_MOSTLY_VALID = st.builds(
    lambda y, mo, d, h, mi, s, frac, zone: f"{y:04d}-{mo}-{d}T{h}:{mi}:{s}{frac}{zone}",
    st.integers(1990, 2110),
    _two(1, 12),
    _two(1, 31),
    _two(0, 23),
    _two(0, 59),
    _two(0, 59),
    st.sampled_from(["", ".5", ".000001", ".123456", ".1234567"]),
    st.one_of(
        st.just("Z"),
        st.builds(lambda sign, h, m: f"{sign}{h}:{m}", st.sampled_from("+-"), _two(0, 23), _two(0, 59)),
    ),
)


@given(st.one_of(_TEXT, _MOSTLY_VALID))
def test_every_rfc3339_like_text_is_decided_as_before(text: str) -> None:
    assert _outcome(_New, text) == _outcome(_Old, text)


def test_known_edges_are_decided_as_before() -> None:
    for value in [
        "2026-11-26T09:30:00Z",
        "2026-11-26T09:30:00.123456+01:00",
        "2026-02-29T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2099-12-31T23:59:59-01:00",
        "1999-12-31T23:59:59Z",
        "2026-11-26T24:00:00Z",
        "2026-11-26T23:59:60Z",
        "2026-11-26T09:30:00+23:59",
        "2026-11-26T09:30:00+24:00",
        "1764149400",
        1764149400,
        None,
        datetime(2026, 11, 26, 9, 30),  # noqa: DTZ001  naive on purpose: refused by both
    ]:
        assert _outcome(_New, value) == _outcome(_Old, value), value
