"""The FHIR Task lifecycle, exhaustively."""

from __future__ import annotations

import itertools

import pytest

from contracts import (
    ALLOWED_TRANSITIONS,
    FINAL_STATUSES,
    INITIAL_STATUS,
    PrikError,
    TaskStatus,
    TransitionError,
    check_transition,
    who_may_set,
)

S = TaskStatus

EXPECTED: set[tuple[TaskStatus, TaskStatus]] = {
    (S.REQUESTED, S.RECEIVED),
    (S.RECEIVED, S.ACCEPTED),
    (S.RECEIVED, S.REJECTED),
    (S.ACCEPTED, S.IN_PROGRESS),
    (S.IN_PROGRESS, S.ON_HOLD),
    (S.ON_HOLD, S.IN_PROGRESS),
    (S.IN_PROGRESS, S.COMPLETED),
    (S.IN_PROGRESS, S.FAILED),
    (S.ON_HOLD, S.COMPLETED),
    (S.ON_HOLD, S.FAILED),
    *((state, S.CANCELLED) for state in (S.REQUESTED, S.RECEIVED, S.ACCEPTED, S.IN_PROGRESS, S.ON_HOLD)),
}


def test_table_matches_design() -> None:
    table = {(a, b) for a, targets in ALLOWED_TRANSITIONS.items() for b in targets}
    assert table == EXPECTED
    assert set(ALLOWED_TRANSITIONS) == set(TaskStatus)
    assert INITIAL_STATUS is S.REQUESTED


def test_final_statuses() -> None:
    assert {S.REJECTED, S.COMPLETED, S.FAILED, S.CANCELLED} == FINAL_STATUSES
    for state in FINAL_STATUSES:
        assert not ALLOWED_TRANSITIONS[state]


@pytest.mark.parametrize(("current", "new"), list(itertools.product(TaskStatus, TaskStatus)))
def test_every_pair(current: TaskStatus, new: TaskStatus) -> None:
    if (current, new) in EXPECTED:
        check_transition(current, new)
        return
    with pytest.raises(TransitionError) as info:
        check_transition(current, new)
    assert str(info.value) == f"task cannot move from {current.value} to {new.value}"
    assert isinstance(info.value, PrikError)
    assert isinstance(info.value, ValueError)


def test_cancelled_from_every_non_final_state() -> None:
    for state in set(TaskStatus) - FINAL_STATUSES:
        check_transition(state, S.CANCELLED)


def test_who_may_set() -> None:
    assert who_may_set(S.CANCELLED) == "requester"
    assert who_may_set(S.REQUESTED) == "requester"
    for state in set(TaskStatus) - {S.CANCELLED, S.REQUESTED}:
        assert who_may_set(state) == "lps"
