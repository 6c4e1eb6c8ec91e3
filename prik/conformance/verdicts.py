"""What came back, and what it means: answers, exchanges, and the verdict on each. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from .probes import Expect, Probe

__all__ = ["Answer", "Exchange", "Result", "Verdict", "judge_exchanges"]

# The 4xx answers prik's deliverer retries (consumers.deliverers): "later", never "no".
_LATER = frozenset({408, 429})


class Result(StrEnum):
    PASS = "pass"  # noqa: S105  a verdict, not a password
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Verdict:
    result: Result
    reason: str

    @classmethod
    def passed(cls, reason: str) -> Verdict:
        return cls(Result.PASS, reason)

    @classmethod
    def failed(cls, reason: str) -> Verdict:
        return cls(Result.FAIL, reason)


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP attempt: the status, or why there was none (`error`), and how long it took."""

    status: int | None
    seconds: float
    retry_after: str | None = None
    error: str | None = None

    @property
    def timed_out(self) -> bool:
        return self.error == "timeout"

    def describe(self, timeout: float) -> str:
        if self.status is not None:
            return f"HTTP {self.status}"
        if self.timed_out:
            return f"no answer within {timeout:g} s"
        return f"no answer ({self.error})"


@dataclass(frozen=True, slots=True)
class Exchange:
    """A probe and every attempt made for it (more than one after a 429 with Retry-After)."""

    probe: Probe
    attempts: tuple[Answer, ...]

    @property
    def final(self) -> Answer:
        return self.attempts[-1]


def _problem(exchange: Exchange, timeout: float) -> str | None:
    """Why this exchange breaks the rule, or None when it kept it."""
    answer = exchange.final
    status = answer.status
    if status is None:
        return answer.describe(timeout)
    if exchange.probe.expect is Expect.ACCEPT:
        if 200 <= status < 300:
            return None
        return f"answered HTTP {status}, not 2xx"
    if 400 <= status < 500:
        # "Try again later" is not a refusal: prik's deliverer sends it again, so nothing was checked.
        return None if status not in _LATER else f"answered HTTP {status} (try again later), not a refusal"
    if 200 <= status < 300:
        return f"answered HTTP {status}: accepted what must be refused with 4xx"
    return f"answered HTTP {status}, not 4xx"


def judge_exchanges(exchanges: Sequence[Exchange], timeout: float) -> Verdict:
    """Pass when every probe got what it expects; the reason names the first that did not."""
    if not exchanges:
        return Verdict.failed("nothing was sent")
    for exchange in exchanges:
        problem = _problem(exchange, timeout)
        if problem is not None:
            return Verdict.failed(f"{exchange.probe.label}: {problem}")
    told = [f"{e.probe.label}: HTTP {e.final.status} in {e.final.seconds:.2f} s" for e in exchanges]
    return Verdict.passed("; ".join(told))
