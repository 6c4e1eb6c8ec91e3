"""`within`: an attempt's time limit, armed only once the attempt waits, with Deadline's rules.

What returns at once returns its value with no timer; what raises at once raises; what
waits is timed out, cancelled from elsewhere, or finishes as a plain `await` would,
its cancellation clean-up and return value included.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Generator
from typing import Any

import pytest

from consumers.deadline import within


async def test_returning_at_once_gives_its_value_and_arms_no_timer() -> None:
    async def at_once() -> int:
        return 7

    loop = asyncio.get_running_loop()
    timers = len(loop._scheduled)  # type: ignore[attr-defined]  # asyncio's timer heap, to see none added
    assert await within(0.01, at_once()) == 7
    assert len(loop._scheduled) == timers  # type: ignore[attr-defined]  # as above


async def test_raising_at_once_raises_the_error() -> None:
    async def refuses() -> None:
        msg = "no"
        raise ValueError(msg)

    with pytest.raises(ValueError, match="no"):
        await within(5, refuses())


async def test_waiting_past_the_limit_is_a_timeout_and_the_attempt_sees_its_cancellation() -> None:
    cleaned = asyncio.Event()

    async def hangs() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            cleaned.set()

    with pytest.raises(TimeoutError):
        await within(0.01, hangs())
    assert cleaned.is_set()
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


@pytest.mark.parametrize("waits", [1, 3])
async def test_waiting_within_the_limit_returns_what_it_returns(waits: int) -> None:
    async def slow() -> str:
        for _ in range(waits):
            await asyncio.sleep(0.001)
        await asyncio.sleep(0)  # a bare yield to the loop, too
        return "done"

    assert await within(5, slow()) == "done"


async def test_a_cancellation_from_elsewhere_stays_one_and_reaches_the_attempt() -> None:
    started, cleaned = asyncio.Event(), asyncio.Event()

    async def attempt() -> None:
        started.set()
        try:
            await asyncio.sleep(10)
        finally:
            cleaned.set()

    task = asyncio.create_task(within(10, attempt()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned.is_set()


async def test_an_attempt_that_swallows_one_cancellation_goes_on() -> None:
    started = asyncio.Event()

    async def stubborn() -> str:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.001)
            return "kept going"
        return "slept"

    task = asyncio.create_task(within(10, stubborn()))
    await started.wait()
    task.cancel()
    assert await task == "kept going"


async def test_an_error_after_a_wait_is_the_attempts_error() -> None:
    async def fails_later() -> None:
        await asyncio.sleep(0.001)
        msg = "later"
        raise RuntimeError(msg)

    with pytest.raises(RuntimeError, match="later"):
        await within(5, fails_later())


class _Plain:
    """An awaitable that is not a coroutine."""

    def __await__(self) -> Generator[Any, Any, str]:
        yield from asyncio.sleep(0.001).__await__()
        return "plain"


async def test_an_awaitable_that_is_not_a_coroutine_is_awaited_under_the_deadline() -> None:
    awaitable: Awaitable[str] = _Plain()
    assert await within(5, awaitable) == "plain"  # type: ignore[arg-type]  # any awaitable is taken


async def test_a_task_dropped_while_waiting_closes_the_attempt() -> None:
    closed = asyncio.Event()

    async def attempt() -> None:
        try:
            await asyncio.Future()
        finally:
            closed.set()

    outer = within(10, attempt())
    step = outer.send(None)  # runs to the attempt's first wait
    assert isinstance(step, asyncio.Future)
    outer.close()  # what a garbage-collected task does to its coroutine
    assert closed.is_set()
    step.cancel()
    gc.collect()
