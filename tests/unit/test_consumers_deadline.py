"""Deadline: a timeout for one delivery attempt, and a cancellation from elsewhere stays one."""

from __future__ import annotations

import asyncio

import pytest

from consumers.deadline import Deadline


async def test_a_block_that_outlives_its_deadline_raises_timeout_and_the_task_goes_on() -> None:
    with pytest.raises(TimeoutError):
        async with Deadline(0.01):
            await asyncio.sleep(10)
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    await asyncio.sleep(0)  # no cancellation left pending


async def test_a_block_within_its_deadline_returns_its_value() -> None:
    async with Deadline(5):
        await asyncio.sleep(0)
        done = True
    assert done
    await asyncio.sleep(0.01)


async def test_a_cancellation_from_elsewhere_is_not_a_timeout() -> None:
    started = asyncio.Event()

    async def attempt() -> None:
        async with Deadline(10):
            started.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(attempt())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_stop_and_the_deadline_at_once_stay_a_cancellation() -> None:
    async def attempt() -> None:
        async with Deadline(0.01):
            await asyncio.sleep(10)

    task = asyncio.create_task(attempt())
    await asyncio.sleep(0.005)
    task.cancel()  # the runtime stops just before the deadline
    with pytest.raises(asyncio.CancelledError):
        await task
