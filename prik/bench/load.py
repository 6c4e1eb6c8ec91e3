"""The publishing end of `prik bench pipeline`: a fixed rate, or as fast as it goes.

`prik` mode publishes video-queue notices with prik's `Publisher` (which encodes
them; at a fixed rate one `publish` per message, with `saturate` `publish_many` of
500), copied from a thousand built before the run with a new id and the CloudEvents
`time` of the moment they are due. `raw` mode is the baseline: plain aiokafka, with
the client factory's producer settings, sending the bytes of the same thousand
notices, encoded before the run, with the send time in a `bench-sent` header.
Before the measured run both send a warm-up message every 0.25 s until the parent
says `go` (every process down the line is then connected and assigned).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from contracts import STRUCTURED_CONTENT_TYPE, VideoQueueNotice, to_bytes
from contracts.headers import CONTENT_TYPE
from prik.kafka import make_producer
from prik.settings import Settings
from producers import Publisher, build
from producers.build import new_id
from producers.keys import key_of

from .routing import SENDER

__all__ = ["CLINICS", "publish"]

CLINICS = [f"{100000000000 + i}" for i in range(200)]
# Distinct messages built before the run, then published in turn.
_POOL = 1000
_WARM_EVERY = 0.25
_TICK = 0.002
# Saturation: messages per send call, and calls in flight at once.
_CHUNK = 500
_CONCURRENT = 4
# At a fixed rate, a producer that falls this far behind stops queueing more.
_MAX_IN_FLIGHT = 20_000

SendBatch = Callable[[int, int], Coroutine[Any, Any, None]]


def _notice(i: int, *, warm: bool = False) -> VideoQueueNotice:
    entry = f"w{i}" if warm else f"m{i}"
    return build.video_queue_notice(SENDER, CLINICS[i % len(CLINICS)], event="joined", queue_entry_id=entry)


async def _paced(send: SendBatch, total: int, rate: float) -> None:
    """Start sending message i at i / rate seconds; returns once every send is acknowledged."""
    pending: set[asyncio.Task[None]] = set()
    failures: list[BaseException] = []

    def done(task: asyncio.Task[None]) -> None:
        pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            failures.append(task.exception())  # type: ignore[arg-type]  # checked just above

    began = time.perf_counter()
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - began) * rate) + 1) - sent
        if due > 0 and len(pending) < _MAX_IN_FLIGHT:
            task = asyncio.create_task(send(sent, due))
            pending.add(task)
            task.add_done_callback(done)
            sent += due
        await asyncio.sleep(_TICK)
    while pending:
        await asyncio.wait(set(pending))
    if failures:
        raise failures[0]


async def _flat_out(send: SendBatch, total: int) -> None:
    """Everything as fast as the sender takes it, `_CONCURRENT` chunks in flight."""
    gate = asyncio.Semaphore(_CONCURRENT)

    async def chunk(start: int) -> None:
        async with gate:
            await send(start, min(_CHUNK, total - start))

    await asyncio.gather(*(chunk(start) for start in range(0, total, _CHUNK)))


async def _run(
    send: SendBatch,
    warm: Callable[[int], Awaitable[None]],
    config: dict[str, Any],
    commands: asyncio.Queue[str | None],
) -> dict[str, Any]:
    go = asyncio.create_task(commands.get())
    n = 0
    while not go.done():
        await warm(n)
        n += 1
        await asyncio.wait({go}, timeout=_WARM_EVERY)
    if go.result() != "go":
        return {"sent": 0, "started_at": None, "finished_at": None}
    total = int(config["total"])
    started_at = time.time()
    if config["saturate"]:
        await _flat_out(send, total)
    else:
        await _paced(send, total, float(config["rate"]))
    return {"sent": total, "started_at": started_at, "finished_at": time.time()}


def _fresh(template: VideoQueueNotice) -> VideoQueueNotice:
    """A copy of a notice built before the run, with a new id and the time of now.

    Building (validating) a notice is the sender's own cost, as encoding is the raw
    baseline's: both happen before the clock starts, so the two publishers compare
    on what they do with a message. The copy keeps `time` the moment of publishing.
    """
    return template.model_copy(update={"id": new_id(), "time": datetime.now(UTC)})


async def _publish_prik(
    settings: Settings, config: dict[str, Any], commands: asyncio.Queue[str | None]
) -> dict[str, Any]:
    pool = [_notice(i) for i in range(_POOL)]
    async with Publisher(settings.kafka, SENDER, settings.topics) as publisher:

        async def send(start: int, count: int) -> None:
            messages = [_fresh(pool[i % _POOL]) for i in range(start, start + count)]
            if config["saturate"]:
                await publisher.publish_many(messages)
            else:
                # As a sender publishes events as they happen: one `publish` each, concurrently.
                await asyncio.gather(*(publisher.publish(m) for m in messages))

        async def warm(i: int) -> None:
            await publisher.publish(_notice(i, warm=True))

        return await _run(send, warm, config, commands)


async def _publish_raw(
    settings: Settings, config: dict[str, Any], commands: asyncio.Queue[str | None]
) -> dict[str, Any]:
    # The same bytes as prik's: encoded before the clock starts, a thousand distinct ones.
    pool = [(key_of(m).encode(), to_bytes(m)) for m in (_notice(i) for i in range(_POOL))]
    topic = settings.topics.ingress(SENDER)
    producer = make_producer(settings.kafka, client_id="prik-bench-raw")
    await producer.start()

    async def send_one(seq: str, i: int) -> asyncio.Future[Any]:
        key, value = pool[i % len(pool)]
        headers = [
            (CONTENT_TYPE, STRUCTURED_CONTENT_TYPE.encode()),
            ("bench-sent", f"{seq}:{time.time():.6f}".encode()),
        ]
        future: asyncio.Future[Any] = await producer.send(topic, value, key=key, headers=headers)
        return future

    async def send(start: int, count: int) -> None:
        futures = [await send_one(str(i), i) for i in range(start, start + count)]
        await asyncio.gather(*futures)

    async def warm(i: int) -> None:
        await (await send_one(f"w{i}", i))

    try:
        return await _run(send, warm, config, commands)
    finally:
        await producer.stop()


async def publish(
    settings: Settings,
    config: dict[str, Any],
    commands: asyncio.Queue[str | None],
    emit: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """Warm up until `go`, then publish `config["total"]` messages; the publisher's `final` fields."""
    emit({"event": "progress", "sent": 0})
    if config["mode"] == "raw":
        return await _publish_raw(settings, config, commands)
    return await _publish_prik(settings, config, commands)
