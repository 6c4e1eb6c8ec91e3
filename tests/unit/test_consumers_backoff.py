"""Retry timing: full-jitter exponential backoff and `Retry-After` parsing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from consumers import Backoff, parse_retry_after

NOW = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)


def test_ceiling_doubles_up_to_the_cap() -> None:
    backoff = Backoff(base=0.5, cap=10)
    assert [backoff.ceiling(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 8, 10]
    assert backoff.ceiling(10_000) == 10  # no overflow after a long outage


def test_delay_is_full_jitter_within_the_ceiling() -> None:
    backoff = Backoff(base=1, cap=8)
    rng = random.Random(4)
    delays = [backoff.delay(4, rng=rng) for _ in range(2000)]
    assert all(0 <= d <= 8 for d in delays)
    # Full jitter: spread over the whole range, not bunched at the top.
    assert min(delays) < 1
    assert max(delays) > 7


def test_retry_after_is_a_floor() -> None:
    backoff = Backoff(base=0.1, cap=0.2)
    assert all(backoff.delay(1, retry_after=5) == 5 for _ in range(100))
    # A Retry-After shorter than the backoff does not shorten it below the jitter.
    assert backoff.delay(3, retry_after=0.0) <= 0.2


def test_backoff_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(base=0, cap=1)
    with pytest.raises(ValueError, match="backoff"):
        Backoff(base=2, cap=1)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        (None, None),
        ("", None),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("١٢", None),  # non-ASCII digits are not seconds
    ],
)
def test_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, NOW) == expected


def test_retry_after_http_date() -> None:
    later = NOW + timedelta(seconds=90)
    assert parse_retry_after(format_datetime(later, usegmt=True), NOW) == pytest.approx(90)
    assert parse_retry_after("Thu, 26 Nov 2026 09:31:00 GMT", NOW) == pytest.approx(60)


def test_retry_after_date_in_the_past_means_now() -> None:
    assert parse_retry_after("Thu, 26 Nov 2026 09:00:00 GMT", NOW) == 0.0
