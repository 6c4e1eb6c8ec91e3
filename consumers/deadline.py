"""A time limit on one delivery attempt: `asyncio.timeout`'s job at a third of its cost.

Every attempt runs under one, so a callback that never returns cannot hold its clinic
for ever. `asyncio.timeout` was ~10 % of the lanes' CPU in py-spy under `prik bench
consumer` (its state machine and rescheduling); this keeps only what an attempt needs:
one timer, and on expiry the task's cancellation turned into `TimeoutError`, while a
cancellation from elsewhere (the runtime stopping, a revoke) stays a cancellation.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

__all__ = ["Deadline"]


class Deadline:
    """`async with Deadline(seconds):` raises `TimeoutError` when the block outlives `seconds`."""

    __slots__ = ("_cancelling", "_expired", "_handle", "_seconds", "_task")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._expired = False
        self._cancelling = 0
        self._task: asyncio.Task[object] | None = None
        self._handle: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        if task is None:
            msg = "Deadline must be used inside a task"
            raise RuntimeError(msg)
        self._task = task
        # Cancellations already requested are not ours to turn into a timeout.
        self._cancelling = task.cancelling()
        self._handle = asyncio.get_running_loop().call_later(self._seconds, self._expire)

    def _expire(self) -> None:
        self._expired = True
        if self._task is not None:
            self._task.cancel()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
        # As asyncio.timeout: our cancel request is withdrawn whenever it was made, and only
        # a cancellation nobody else asked for becomes the timeout.
        if (
            self._expired
            and self._task is not None
            and self._task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise TimeoutError from exc
