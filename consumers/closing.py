"""Bounded shutdown steps: a close that waits on an unreachable Kafka must not hang the process.

aiokafka's `commit`, `stop` and `flush` retry until the broker answers (a coordinator
lookup never gives up), so while Kafka is down every close step would wait for ever.
Each step here gets a time budget; past it the step is cancelled, logged and left
behind. Nothing is lost by that: what was not committed is read again later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from prik.logs import get_logger

__all__ = ["bounded"]

_log = get_logger("prik.consumers")


async def bounded(step: Awaitable[object], timeout: float, what: str) -> bool:  # noqa: ASYNC109  the budget
    """Await `step` for at most `timeout` seconds; True when it finished without error.

    Unlike `asyncio.wait_for`, a step that ignores its cancellation is not waited for
    either: it is cancelled and abandoned, and the caller moves on.
    """
    task = asyncio.ensure_future(step)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    finally:
        if not task.done():
            task.cancel()
            task.add_done_callback(_swallow)
    if not done:
        _log.warning("shutdown step timed out, moving on", step=what, timeout=timeout)
        return False
    if task.cancelled():
        return False
    error = task.exception()
    if error is not None:
        _log.warning("shutdown step failed, moving on", step=what, error=type(error).__name__)
        return False
    return True


def _swallow(task: asyncio.Future[object]) -> None:
    # An abandoned step's late failure is of no interest, but must be retrieved (no asyncio warning).
    if not task.cancelled():
        task.exception()
