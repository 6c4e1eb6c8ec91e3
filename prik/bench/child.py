"""The processes of `prik bench pipeline`: `python -m prik.bench.child ROLE CONFIG_JSON`.

Roles: `publish` (prik's Publisher, or raw aiokafka on pre-encoded bytes), `receive`
(a raw aiokafka consume loop), `clinic` (the clinic consumer delivering to an
in-process LPS, or to the reference LPS over HTTP) and `passthrough` (the
transactional pass-through of `prik bench`). Each writes JSON lines on stdout
(`progress`, then one `final` with its own peak RSS) and reads stdin: a publisher
starts its measured run on a line `go`; the others stop when stdin closes, so a
dying parent never leaves one behind. Settings come from PRIK_* as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from contracts import Message, VideoQueueNotice, codec, parse_tenants
from prik.logs import configure_logging
from prik.runner import run_to_end
from prik.settings import Settings, load_settings

from .latency import Arrivals, peak_rss_mb
from .load import publish
from .routing import LPS, TENANTS_TOML

__all__ = ["main"]

PROGRESS_SECONDS = 0.5


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(codec.dumps(event).decode() + "\n")
    sys.stdout.flush()


def stdin_lines() -> asyncio.Queue[str | None]:
    """Lines from stdin as they come, then None at its end (read by a daemon thread)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line.strip())
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=read, daemon=True).start()
    return queue


async def until_eof(queue: asyncio.Queue[str | None]) -> None:
    while await queue.get() is not None:
        pass


async def _report_until_eof(arrivals: Arrivals) -> None:
    """Progress lines every half second until the parent closes stdin."""
    eof = asyncio.create_task(until_eof(stdin_lines()))
    while not eof.done():
        emit(arrivals.progress())
        await asyncio.wait({eof}, timeout=PROGRESS_SECONDS)


async def _receive(settings: Settings, config: dict[str, Any]) -> None:
    from prik.kafka import make_consumer  # noqa: PLC0415  only this role needs a bare consumer

    arrivals = Arrivals()
    consumer = make_consumer(
        settings.kafka,
        config["topic"],
        group_id=config["group"],
        client_id="prik-bench-receive",
        # As the clinic consumer: fetch as soon as data is there.
        fetch_max_wait_ms=50,
    )
    await consumer.start()

    async def loop() -> None:
        last_commit = time.monotonic()
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            for records in batches.values():
                for record in records:
                    stamp = dict(record.headers).get("bench-sent", b"") or b""
                    seq, _, sent_at = stamp.decode().partition(":")
                    arrivals.record(seq, float(sent_at), warm=seq.startswith("w"))
            if time.monotonic() - last_commit >= PROGRESS_SECONDS:
                # As the clinic consumer commits: every half second.
                await consumer.commit()
                last_commit = time.monotonic()

    task = asyncio.create_task(loop())
    try:
        await _report_until_eof(arrivals)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()
    emit(arrivals.final())


def _record_message(arrivals: Arrivals, message: Message) -> None:
    warm = isinstance(message, VideoQueueNotice) and message.data.queue_entry_id.startswith("w")
    arrivals.record(message.id, message.time.timestamp(), warm=warm)


async def _clinic(settings: Settings, config: dict[str, Any]) -> None:
    from consumers import (  # noqa: PLC0415  only this role runs a consumer
        CallbackDeliverer,
        ClinicConsumer,
        Deliverer,
        Received,
        ReferenceLps,
        WebhookDeliverer,
    )

    arrivals = Arrivals()
    async with contextlib.AsyncExitStack() as stack:
        deliverer: Deliverer
        if config.get("webhook"):

            def received(item: Received) -> None:
                body = codec.loads(item.body)
                warm = str(body.get("data", {}).get("queue_entry_id", "")).startswith("w")
                sent_at = _unix(str(body["time"]))
                arrivals.record(item.message_id, sent_at, warm=warm)

            lps = await stack.enter_async_context(ReferenceLps(on_receive=received))
            deliverer = WebhookDeliverer(lps.url, lps.secrets)
        else:

            async def callback(message: Message) -> None:
                _record_message(arrivals, message)

            deliverer = CallbackDeliverer(callback)
        await stack.enter_async_context(ClinicConsumer(settings.kafka, settings.topics, LPS, deliverer))
        await _report_until_eof(arrivals)
    emit(arrivals.final())


def _unix(text: str) -> float:
    from datetime import datetime  # noqa: PLC0415  only the webhook path reads times from text

    return datetime.fromisoformat(text).timestamp()


async def _passthrough(settings: Settings, _config: dict[str, Any]) -> None:
    from broker import DedupWindow, DirectoryTable, TaskTable  # noqa: PLC0415  only this role routes
    from broker.engine import TransactionalEngine  # noqa: PLC0415

    # The pass-through of `prik bench`, reused as it is: the same engine, no rules.
    from .routing import _PassThrough as PassThrough  # noqa: PLC0415

    tenants = parse_tenants(TENANTS_TOML)
    topics = settings.topics
    engine = TransactionalEngine(
        settings.kafka,
        PassThrough(topics, lambda: tenants, DirectoryTable(), TaskTable(), DedupWindow()),
        group_id=f"{topics.prefix}-passthrough",
        transactional_prefix=f"{topics.prefix}-pt",
    )
    await engine.start()
    task = asyncio.create_task(engine.run())
    eof = asyncio.create_task(until_eof(stdin_lines()))
    while not eof.done() and not task.done():
        emit({"event": "progress", "records": engine.stats.records})
        await asyncio.wait({eof, task}, timeout=PROGRESS_SECONDS)
    engine.request_stop()
    await task
    await engine.stop()
    emit({"event": "final", "records": engine.stats.records, "peak_rss_mb": peak_rss_mb()})


async def _publish(settings: Settings, config: dict[str, Any]) -> None:
    final = await publish(settings, config, stdin_lines(), emit)
    emit(final | {"event": "final", "peak_rss_mb": peak_rss_mb()})


_ROLES: dict[str, Callable[[Settings, dict[str, Any]], Coroutine[Any, Any, None]]] = {
    "publish": _publish,
    "receive": _receive,
    "clinic": _clinic,
    "passthrough": _passthrough,
}


def main(argv: list[str]) -> int:
    role, config_text = argv
    settings = load_settings()
    configure_logging(settings.log_level)
    run_to_end(_ROLES[role](settings, codec.loads(config_text)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
