"""The FHIR Task lifecycle as a pure function.

requested -> received -> accepted | rejected; accepted -> in-progress <-> on-hold
-> completed | failed; the requester may cancel before a final state.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

from contracts.errors import TransitionError


class TaskStatus(StrEnum):
    """FHIR Task status codes prik tracks."""

    REQUESTED = "requested"
    RECEIVED = "received"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    IN_PROGRESS = "in-progress"
    ON_HOLD = "on-hold"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


INITIAL_STATUS = TaskStatus.REQUESTED

FINAL_STATUSES: frozenset[TaskStatus] = frozenset(
    {TaskStatus.REJECTED, TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED}
)

_S = TaskStatus

# DESIGN.md's "in-progress <-> on-hold -> completed | failed" reads both ways, so work
# may finish (or fail) from in-progress and from on-hold alike.
ALLOWED_TRANSITIONS: Mapping[TaskStatus, frozenset[TaskStatus]] = MappingProxyType(
    {
        _S.REQUESTED: frozenset({_S.RECEIVED, _S.CANCELLED}),
        _S.RECEIVED: frozenset({_S.ACCEPTED, _S.REJECTED, _S.CANCELLED}),
        _S.ACCEPTED: frozenset({_S.IN_PROGRESS, _S.CANCELLED}),
        _S.IN_PROGRESS: frozenset({_S.ON_HOLD, _S.COMPLETED, _S.FAILED, _S.CANCELLED}),
        _S.ON_HOLD: frozenset({_S.IN_PROGRESS, _S.COMPLETED, _S.FAILED, _S.CANCELLED}),
        _S.REJECTED: frozenset(),
        _S.COMPLETED: frozenset(),
        _S.FAILED: frozenset(),
        _S.CANCELLED: frozenset(),
    }
)


def check_transition(current: TaskStatus, new: TaskStatus) -> None:
    """Raise `TransitionError` unless a task may move from `current` to `new`."""
    if new not in ALLOWED_TRANSITIONS[current]:
        msg = f"task cannot move from {current.value} to {new.value}"
        raise TransitionError(msg)


def who_may_set(new: TaskStatus) -> Literal["requester", "lps"]:
    """Which side of a task may send `new`: the requester creates and cancels, the LPS does the rest."""
    if new in {TaskStatus.REQUESTED, TaskStatus.CANCELLED}:
        return "requester"
    return "lps"
