"""A time limit on one delivery attempt: `asyncio.timeout`'s job at a third of its cost.

Every attempt runs under one, so a callback that never returns cannot hold its clinic
for ever. `asyncio.timeout` was ~10 % of the lanes' CPU in py-spy under `prik bench
consumer` (its state machine and rescheduling); this keeps only what an attempt needs:
one timer, and on expiry the task's cancellation turned into `TimeoutError`, while a
cancellation from elsewhere (the runtime stopping, a revoke) stays a cancellation.

`within` arms that timer only when the attempt actually waits: a callback that returns
without suspending (an in-process LPS) could not be interrupted by a timer anyway, and
arming and cancelling one per message was ~5 % of the consumer's CPU under `prik bench
consumer`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from types import CoroutineType, TracebackType
from typing import Any, Generic, TypeVar

__all__ = ["Deadline", "within"]

T = TypeVar("T")


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


async def within(seconds: float, coro: Coroutine[Any, Any, T]) -> T:
    """Await `coro` under `Deadline(seconds)`, the timer armed only once `coro` first waits."""
    if type(coro) is not CoroutineType:  # some other awaitable: the plain way
        async with Deadline(seconds):
            return await coro
    try:
        waiting_on = coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]  # a coroutine's return value
    async with Deadline(seconds):
        return await _Rest(coro, waiting_on)


class _Rest(Generic[T]):
    """The rest of a coroutine that already ran to its first wait, awaited as `await coro` would.

    What it waits on goes to the task; what the task sends or throws (a cancellation)
    goes back into the coroutine: the delegation of `yield from`, from its second step.
    """

    __slots__ = ("_coro", "_waiting_on")

    def __init__(self, coro: Coroutine[Any, Any, T], waiting_on: object) -> None:
        self._coro = coro
        self._waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, T]:
        coro, waiting_on = self._coro, self._waiting_on
        while True:
            try:
                sent = yield waiting_on
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # noqa: BLE001  a cancellation (or any throw) is the coroutine's
                try:
                    waiting_on = coro.throw(exc)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]  # a coroutine's return value
            else:
                try:
                    waiting_on = coro.send(sent)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]  # a coroutine's return value
