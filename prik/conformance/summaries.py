"""Scenarios judged over every request of a run: the answer time, 410 Gone, 429 + Retry-After. Pure."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from consumers.backoff import parse_retry_after

from .verdicts import Answer, Exchange, Verdict

__all__ = ["SUMMARIES", "Summary"]


@dataclass(frozen=True, slots=True)
class Summary:
    """A named check over all exchanges of the run (`judge(exchanges, timeout)`)."""

    name: str
    rule: str
    judge: Callable[[Sequence[Exchange], float], Verdict]


def _attempts(exchanges: Sequence[Exchange]) -> list[Answer]:
    return [answer for exchange in exchanges for answer in exchange.attempts]


def _answer_time(exchanges: Sequence[Exchange], timeout: float) -> Verdict:
    attempts = _attempts(exchanges)
    late = [answer for answer in attempts if answer.timed_out]
    if late:
        return Verdict.failed(
            f"{len(late)} of {len(attempts)} requests got no answer within {timeout:g} s "
            "(prik retries a delivery that times out, so a slow endpoint gets every message again)"
        )
    answered = [answer.seconds for answer in attempts if answer.status is not None]
    if not answered:
        return Verdict.failed("no request was answered at all")
    return Verdict.passed(
        f"all {len(answered)} answered requests within {timeout:g} s (slowest {max(answered):.2f} s)"
    )


def _gone(exchanges: Sequence[Exchange], _timeout: float) -> Verdict:
    gone = [exchange.probe.label for exchange in exchanges if exchange.final.status == 410]
    if not gone:
        return Verdict.passed("not used: no request was answered 410")
    return Verdict.passed(
        f"info: {len(gone)} request(s) answered 410 Gone (first: {gone[0]}); prik then stops "
        "delivering to this endpoint and dead-letters until its consumer is restarted"
    )


def _throttled(exchanges: Sequence[Exchange], _timeout: float) -> Verdict:
    throttled = [answer for answer in _attempts(exchanges) if answer.status == 429]
    if not throttled:
        return Verdict.passed("not used: no request was answered 429")
    unreadable = [answer for answer in throttled if parse_retry_after(answer.retry_after) is None]
    if unreadable:
        return Verdict.failed(
            f"{len(unreadable)} of {len(throttled)} answers 429 had no valid Retry-After "
            "(seconds or an HTTP date)"
        )
    return Verdict.passed(
        f"{len(throttled)} answer(s) 429 with a valid Retry-After; retried after it, as prik does"
    )


SUMMARIES: tuple[Summary, ...] = (
    Summary(
        "answer-within-timeout",
        "every request is answered within the timeout (15 s in production)",
        _answer_time,
    ),
    Summary("status-410-gone", "410 Gone, if used, is understood as: stop delivering here", _gone),
    Summary(
        "status-429-retry-after",
        "429, if used, carries a valid Retry-After, and prik honours it",
        _throttled,
    ),
)
