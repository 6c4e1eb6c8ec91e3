"""`prik bench consumer`: the clinic consumer delivering to an in-process LPS, against raw aiokafka.

N delivery records, as the router writes them (key the clinic's SOR, the notice's
structured bytes, `content-type` and a `prik-route` token), are published once
onto a fresh delivery topic. Then, in alternating rounds, each with a group of
its own reading all N from the start:

- `baseline`: a raw aiokafka consume loop with the consumer settings of the client
  factory (read_committed, manual commits, every 0.5 s as the clinic consumer),
  `getmany` as the clinic consumer calls it, counting records (the target's baseline);
- `reference`: the same loop writing one receipt's bytes per record (make_producer:
  acks=all, idempotent) and awaiting those acknowledgements before the next fetch:
  the floor of any consumer that confirms each record in Kafka, as prik must;
- `prik`: `ClinicConsumer` with a `CallbackDeliverer` (the in-process LPS of
  `prik bench pipeline`) that records each message id. Every message is parsed,
  delivered in its clinic's order and gets its `delivered` receipt (acks=all)
  before its offset may be committed.

A round's clock runs from the first record in hand to the last one done (counted;
for prik: its receipt acknowledged). Each stage's best round is what the ratios
compare (`ratio` to the baseline, `ratio_to_reference`); after each round the
group's committed offsets are checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from consumers import CallbackDeliverer, ClinicConsumer, OutcomeEvent, build_receipt
from contracts import STRUCTURED_CONTENT_TYPE, Message, Outcome, PrikError, to_bytes
from contracts.headers import CONTENT_TYPE, ROUTE
from prik.kafka import kafka_errors, make_consumer, make_producer
from prik.settings import Settings

from .latency import peak_rss_mb
from .stage_support import LPS, SENDER, Rounds, Say, committed_total, end_offsets_total, notices, provisioned

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


@dataclass(frozen=True, slots=True)
class _Confirm:
    """The reference loop's write per record: a receipt's bytes, acknowledged before the next fetch."""

    producer: AIOKafkaProducer
    topic: str
    value: bytes
    total: int
    tag: str

    async def each(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        headers = [(CONTENT_TYPE, STRUCTURED_CONTENT_TYPE.encode())]
        futures = [
            await self.producer.send(
                self.topic, self.value, key=b"%d-%d" % (r.partition, r.offset), headers=headers
            )
            for r in records
        ]
        await asyncio.gather(*futures)


async def _raw_round(
    settings: Settings, topic: str, group: str, total: int, confirm: _Confirm | None = None
) -> tuple[float, float, int]:
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
                    if confirm is not None:
                        await confirm.each(records)
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


class _Tally:
    """Every stage's rounds and counts over a run."""

    def __init__(self) -> None:
        self.stages = {"baseline": Rounds(), "reference": Rounds(), "prik": Rounds()}
        self.counts = dict.fromkeys(("consumed", "confirmed", "delivered", "duplicates", "receipts"), 0)
        self.committed = dict.fromkeys(self.stages, 0)
        self.outcomes = {o.value: 0 for o in Outcome}


async def _round(
    settings: Settings, topic: str, n: int, confirm: _Confirm, *, tally: _Tally, say: Say
) -> None:
    """One round of each stage, each with a group of its own reading every record from the start."""
    messages, tag = confirm.total, f"{settings.topic_prefix}-{confirm.tag}-{n}"
    for name in ("baseline", "reference"):
        say(f"round {n}: {name}")
        group = f"{tag}-{name}"
        seconds, cpu, consumed = await _raw_round(
            settings, topic, group, messages, confirm if name == "reference" else None
        )
        tally.stages[name].add(messages, seconds, cpu)
        tally.counts["consumed" if name == "baseline" else "confirmed"] += consumed
        tally.committed[name] += await committed_total(settings.kafka, group, topic)
    say(f"round {n}: prik")
    group = f"{tag}-clinic"
    lps, receipts = await _prik_round(settings, group, messages)
    tally.stages["prik"].add(messages, lps.seconds, lps.cpu_last - lps.cpu_first)
    tally.counts["delivered"] += len(lps.seen)
    tally.counts["duplicates"] += lps.duplicates
    tally.counts["receipts"] += receipts
    for name, count in lps.outcomes.items():
        tally.outcomes[name] = tally.outcomes.get(name, 0) + count
    tally.committed["prik"] += await committed_total(settings.kafka, group, topic)


async def bench_consumer(base: Settings, messages: int, rounds: int, say: Say) -> dict[str, Any]:
    """Alternate rounds of the raw loop, the reference loop and the clinic consumer on the same records."""
    tally = _Tally()
    async with provisioned(base, "con") as settings:
        topic = settings.topics.deliver(LPS)
        await _publish_deliveries(settings, topic, messages, say)
        sample = notices(1)[0]
        receipt = build_receipt(LPS, sample, Outcome.DELIVERED, recipient=sample.recipient, attempts=1)
        producer = make_producer(settings.kafka, client_id="prik-bench-reference")
        with kafka_errors(f"connecting to Kafka at {settings.kafka.bootstrap}"):
            await producer.start()
        try:
            confirm = _Confirm(
                producer, settings.topics.ingress(SENDER), to_bytes(receipt), messages, secrets.token_hex(2)
            )
            for n in range(1, rounds + 1):
                await _round(settings, topic, n, confirm, tally=tally, say=say)
        finally:
            with kafka_errors("closing the reference loop's producer"):
                await producer.stop()
        receipts_on_topic: int | None = None
        with contextlib.suppress(PrikError):
            receipts_on_topic = await end_offsets_total(settings.kafka, settings.topics.ingress(LPS))
    counts, committed, stages = tally.counts, tally.committed, tally.stages
    baseline = stages["baseline"].summary() | {
        "consumed": counts["consumed"],
        "committed": committed["baseline"],
    }
    reference = stages["reference"].summary() | {
        "consumed": counts["confirmed"],
        "written": counts["confirmed"],
        "committed": committed["reference"],
    }
    prik = stages["prik"].summary() | {
        "delivered": counts["delivered"],
        "duplicates": counts["duplicates"],
        "receipts": counts["receipts"],
        "receipts_on_topic": receipts_on_topic,
        "outcomes": tally.outcomes,
        "committed": committed["prik"],
    }
    ratio = prik["per_second"] / baseline["per_second"]
    return {
        "stage": "consumer",
        "bootstrap": base.kafka.bootstrap,
        "messages": messages,
        "rounds": rounds,
        "baseline": baseline,
        "reference": reference,
        "prik": prik,
        "ratio": round(ratio, 4),
        "ratio_to_reference": round(prik["per_second"] / reference["per_second"], 4),
        "target": CONSUMER_TARGET,
        "met": ratio >= CONSUMER_TARGET,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
