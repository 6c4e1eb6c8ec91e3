"""`prik bench consumer`: the clinic consumer delivering to an in-process LPS, against raw aiokafka.

N delivery records, as the router writes them (key the clinic's SOR, the notice's
structured bytes, `content-type` and a `prik-route` token), are published once
onto a fresh delivery topic. Then, in alternating rounds, each with a group of
its own reading all N from the start:

- `baseline`: a raw aiokafka consume loop with the consumer settings of the client
  factory (read_committed, manual commits, every 0.5 s as the clinic consumer),
  `getmany` as the clinic consumer calls it, counting records;
- `prik`: `ClinicConsumer` with a `CallbackDeliverer` (the in-process LPS of
  `prik bench pipeline`) that records each message id. Every message is parsed,
  delivered in its clinic's order and gets its `delivered` receipt (acks=all)
  before its offset may be committed.

A round's clock runs from the first record in hand to the last one done (counted;
for prik: its receipt acknowledged). Each stage's best round is what the ratio
compares; after each round the group's committed offsets are checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import Any

from consumers import CallbackDeliverer, ClinicConsumer, OutcomeEvent
from contracts import STRUCTURED_CONTENT_TYPE, Message, Outcome, PrikError, to_bytes
from contracts.headers import CONTENT_TYPE, ROUTE
from prik.kafka import kafka_errors, make_consumer, make_producer
from prik.settings import Settings

from .latency import peak_rss_mb
from .stage_support import LPS, Rounds, Say, committed_total, end_offsets_total, notices, provisioned

__all__ = ["CONSUMER_TARGET", "bench_consumer"]

CONSUMER_TARGET = 0.8
_COMMIT_EVERY = 0.5


def _within(total: int) -> float:
    """How long one round may take before it counts as stuck."""
    return max(120.0, total / 100)


async def _publish_deliveries(settings: Settings, topic: str, total: int, say: Say) -> None:
    """`total` delivery records as the router writes them, acknowledged."""
    from broker.tokens import RouteTokens  # noqa: PLC0415  the router's tokens, only to stamp these

    say(f"publishing {total} delivery records")
    tokens = RouteTokens(secrets.token_bytes(32))
    content_type = (CONTENT_TYPE, STRUCTURED_CONTENT_TYPE.encode())
    producer = make_producer(settings.kafka, client_id="prik-bench-deliveries")
    with kafka_errors(f"publishing to {topic}"):
        await producer.start()
        try:
            futures = []
            for message in notices(total):
                headers = [content_type, (ROUTE, tokens.make(message.id, message.source, LPS))]
                key = (message.recipient or "").encode()
                futures.append(await producer.send(topic, to_bytes(message), key=key, headers=headers))
            await asyncio.gather(*futures)
        finally:
            await producer.stop()


async def _raw_round(settings: Settings, topic: str, group: str, total: int) -> tuple[float, float, int]:
    """Seconds and CPU seconds from the first record to the `total`-th, and how many were consumed."""
    consumer = make_consumer(
        settings.kafka, topic, group_id=group, client_id="prik-bench-raw", fetch_max_wait_ms=50
    )
    with kafka_errors(f"consuming {topic}"):
        await consumer.start()
        try:
            consumed = 0
            first: float | None = None
            cpu = 0.0
            next_commit = time.monotonic() + _COMMIT_EVERY
            deadline = time.monotonic() + _within(total)
            while consumed < total:
                # As the clinic consumer's fetch loop asks.
                batches = await consumer.getmany(timeout_ms=200, max_records=500)
                if first is None and batches:
                    first, cpu = time.perf_counter(), time.process_time()
                for records in batches.values():
                    consumed += len(records)
                if time.monotonic() >= next_commit:
                    await consumer.commit()
                    next_commit = time.monotonic() + _COMMIT_EVERY
                if time.monotonic() > deadline:
                    msg = f"bench consumer: the raw loop read {consumed} of {total} records in time"
                    raise PrikError(msg)
            seconds, cpu = time.perf_counter() - (first or 0.0), time.process_time() - cpu
            await consumer.commit()
        finally:
            await consumer.stop()
    return seconds, cpu, consumed


class _Lps:
    """The in-process LPS: records each message id it is handed, and each final outcome."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.seen: set[str] = set()
        self.duplicates = 0
        self.outcomes: dict[str, int] = {}
        self.finals = 0
        self.first: float | None = None
        self.last: float | None = None
        self.cpu_first = self.cpu_last = 0.0
        self.done = asyncio.Event()

    @property
    def seconds(self) -> float:
        """From the first delivery to the last final outcome (both set once `done`)."""
        return (self.last or 0.0) - (self.first or 0.0)

    async def receive(self, message: Message) -> None:
        if self.first is None:
            self.first, self.cpu_first = time.perf_counter(), time.process_time()
        if message.id in self.seen:
            self.duplicates += 1
        else:
            self.seen.add(message.id)

    def outcome(self, event: OutcomeEvent) -> None:
        self.outcomes[event.outcome.value] = self.outcomes.get(event.outcome.value, 0) + 1
        self.finals += 1
        if self.finals >= self.total and not self.done.is_set():
            self.last, self.cpu_last = time.perf_counter(), time.process_time()
            self.done.set()


async def _prik_round(settings: Settings, group: str, total: int) -> tuple[_Lps, int]:
    """The LPS's record (its clock runs from the first delivery to the last receipt); receipts written."""
    lps = _Lps(total)
    consumer = ClinicConsumer(
        settings.kafka,
        settings.topics,
        LPS,
        CallbackDeliverer(lps.receive),
        on_outcome=lps.outcome,
        group_id=group,
    )
    async with consumer:
        try:
            await asyncio.wait_for(lps.done.wait(), _within(total))
        except TimeoutError:
            msg = f"bench consumer: the clinic consumer finished {lps.finals} of {total} records in time"
            raise PrikError(msg) from None
    return lps, consumer.stats.receipts


async def bench_consumer(base: Settings, messages: int, rounds: int, say: Say) -> dict[str, Any]:
    """Alternate rounds of a raw consume loop and the clinic consumer on the same records."""
    async with provisioned(base, "con") as settings:
        topic = settings.topics.deliver(LPS)
        await _publish_deliveries(settings, topic, messages, say)
        stages = {"baseline": Rounds(), "prik": Rounds()}
        counts = {"consumed": 0, "delivered": 0, "duplicates": 0, "receipts": 0}
        committed = {"baseline": 0, "prik": 0}
        outcomes: dict[str, int] = {}
        tag = secrets.token_hex(2)
        for n in range(1, rounds + 1):
            say(f"round {n}/{rounds}: baseline")
            group = f"{settings.topic_prefix}-raw-{tag}-{n}"
            seconds, cpu, consumed = await _raw_round(settings, topic, group, messages)
            stages["baseline"].add(messages, seconds, cpu)
            counts["consumed"] += consumed
            committed["baseline"] += await committed_total(settings.kafka, group, topic)

            say(f"round {n}/{rounds}: prik")
            group = f"{settings.topic_prefix}-clinic-{tag}-{n}"
            lps, receipts = await _prik_round(settings, group, messages)
            stages["prik"].add(messages, lps.seconds, lps.cpu_last - lps.cpu_first)
            counts["delivered"] += len(lps.seen)
            counts["duplicates"] += lps.duplicates
            counts["receipts"] += receipts
            for name, count in lps.outcomes.items():
                outcomes[name] = outcomes.get(name, 0) + count
            committed["prik"] += await committed_total(settings.kafka, group, topic)
        with contextlib.suppress(PrikError):
            counts["receipts_on_topic"] = await end_offsets_total(
                settings.kafka, settings.topics.ingress(LPS)
            )
    baseline = stages["baseline"].summary() | {
        "consumed": counts["consumed"],
        "committed": committed["baseline"],
    }
    prik = stages["prik"].summary() | {
        "delivered": counts["delivered"],
        "duplicates": counts["duplicates"],
        "receipts": counts["receipts"],
        "receipts_on_topic": counts.get("receipts_on_topic"),
        "outcomes": {name: outcomes.get(name, 0) for name in (o.value for o in Outcome)},
        "committed": committed["prik"],
    }
    ratio = prik["per_second"] / baseline["per_second"]
    return {
        "stage": "consumer",
        "bootstrap": base.kafka.bootstrap,
        "messages": messages,
        "rounds": rounds,
        "baseline": baseline,
        "prik": prik,
        "ratio": round(ratio, 3),
        "target": CONSUMER_TARGET,
        "met": ratio >= CONSUMER_TARGET,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
