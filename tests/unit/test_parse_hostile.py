"""`contracts.parse` on the hostile corpus: only `ParseError`, no CPR in a reason, bounded cost."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime

import orjson
from hypothesis import given, settings

from contracts import ParseError, parse, to_bytes
from producers import build
from tests.hostile.corpus import (
    CLINIC,
    CPRS,
    HostileRecord,
    arbitrary_headers,
    arbitrary_values,
    cpr_leaks,
    delivery_records,
    encode,
    hostile_records,
)

# `parse` turns anything unforeseen into this reason: reaching it means a rule is missing.
_CATCH_ALL = "message could not be read"


def _corpus() -> list[HostileRecord]:
    now = datetime.now(UTC)
    return hostile_records(1, 520, now) + delivery_records(2, 110, now)


def _refusal(value: bytes | None, headers: list[tuple[str, bytes | None]]) -> ParseError | None:
    """The ParseError `parse` raises, or None when it reads a message; anything else propagates."""
    try:
        parse(value, headers)
    except ParseError as exc:
        return exc
    return None


def test_parse_raises_only_parse_error_with_a_reason_free_of_cpr() -> None:
    unforeseen = []
    for record in _corpus():
        where = f"{record.category} ({record.note})"
        try:
            error = _refusal(record.value, record.headers)
        except Exception as exc:  # noqa: BLE001 - the point: nothing but ParseError
            unforeseen.append(f"{where}: raised {type(exc).__name__}")
            continue
        if error is None:
            continue
        assert error.stage in ("parse", "validate")
        assert error.reason
        assert not cpr_leaks(error.reason), f"{where}: {error.reason}"
        assert not cpr_leaks(str(error))
        if error.reason == _CATCH_ALL:
            unforeseen.append(where)
    assert not unforeseen, "\n".join(unforeseen)


@settings(max_examples=500, deadline=None)
@given(arbitrary_values(), arbitrary_headers())
def test_arbitrary_bytes_and_headers_raise_only_parse_error(
    value: bytes | None, headers: list[tuple[str, bytes | None]]
) -> None:
    error = _refusal(value, headers)
    if error is not None:
        assert not cpr_leaks(error.reason)
        return
    # Whatever parses must survive its own canonical round trip.
    message = parse(value, headers)
    assert parse(to_bytes(message)) == message


def _best_of(runs: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        with contextlib.suppress(ParseError):
            fn()
        best = min(best, time.perf_counter() - start)
    return best


def test_100k_unknown_keys_cost_about_what_a_valid_record_costs() -> None:
    """Issue 7: a record with 100k unknown keys must not cost more than a valid one (generously: 20x)."""
    message = build.video_queue_notice(
        "minlaege-video", CLINIC, event="joined", queue_entry_id="q", cpr=CPRS[0]
    )
    valid = to_bytes(message)
    envelope = message.model_dump(mode="json", exclude_none=True)
    wide = encode({**envelope, **{f"k{i:x}": 0 for i in range(100_000)}})
    baseline = _best_of(300, lambda: parse(valid))
    cost = _best_of(20, lambda: parse(wide))
    assert cost <= 20 * baseline, f"{cost * 1e6:.0f} us against {baseline * 1e6:.0f} us for a valid record"


def _fitting_hostile() -> list[tuple[str, bytes]]:
    message = build.video_queue_notice(
        "minlaege-video", CLINIC, event="joined", queue_entry_id="q", cpr=CPRS[0]
    )
    envelope = message.model_dump(mode="json", exclude_none=True)
    strings = {**envelope, "data": {**envelope["data"], "extra": ["ab"] * 12_000}}
    return [
        ("6.5k unknown keys", encode({**envelope, **{f"k{i:x}": 0 for i in range(6_500)}})),
        ("12k short strings in data", encode(strings)),
    ]


def test_hostile_records_under_the_size_limit_cost_no_more_than_a_few_reads_of_their_bytes() -> None:
    """Under 64 KiB the checks may read the bytes a few times, but not pay per unknown key or string."""
    for label, value in _fitting_hostile():
        assert len(value) <= 64 * 1024
        decode = _best_of(30, lambda v=value: orjson.loads(v))  # type: ignore[misc]
        cost = _best_of(30, lambda v=value: parse(v))  # type: ignore[misc]
        assert cost <= 3 * decode, f"{label}: parse {cost * 1e6:.0f} us, orjson alone {decode * 1e6:.0f} us"
