"""Retry timing: exponential backoff with full jitter, and the HTTP `Retry-After` header."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["Backoff", "parse_retry_after"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry number `attempt` (1 = the first retry): uniform in [0, min(cap, base*2^(n-1))].

    Full jitter (rather than a fixed schedule) spreads the retries of many clinics
    that failed together, so a recovering endpoint is not hit by all of them at once.
    """

    base: float = 0.5
    cap: float = 60.0

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            msg = "backoff needs 0 < base <= cap"
            raise ValueError(msg)

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the delay before retry `attempt`."""
        # The exponent is bounded so a very long outage cannot overflow the float.
        return min(self.cap, self.base * 2.0 ** min(max(attempt, 1) - 1, 60))

    def delay(
        self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before retry `attempt`; never earlier than the receiver's `Retry-After`."""
        jittered = (rng or _RNG).uniform(0.0, self.ceiling(attempt))
        if retry_after is None:
            return jittered
        return max(retry_after, jittered)


# Not cryptographic: jitter only spreads load.
_RNG = random.Random()  # noqa: S311


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from `now` that a `Retry-After` header asks for, or None when absent or unreadable.

    RFC 9110 allows a non-negative integer of seconds or an HTTP date; a date in the
    past means "now" (0). Anything else is ignored rather than trusted.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # RFC 9110 dates are GMT; an obsolete form without zone is read as UTC too.
        when = when.replace(tzinfo=UTC)
    moment = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - moment).total_seconds())
