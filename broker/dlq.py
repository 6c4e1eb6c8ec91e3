"""Dead letters for operators: list them, and put chosen ones back through ingress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts import ParseError, Topics, codec, contains_cpr, tenant_of_source
from contracts import headers as h
from prik.kafka import kafka_errors, make_consumer, make_producer
from prik.settings import KafkaSettings
from producers.reading import read_records

__all__ = ["REPLAY_HEADER", "DeadLetter", "list_dead_letters", "replay_dead_letters"]

# The operator sends it again on purpose, usually soon after the first attempt.
REPLAY_HEADER = h.REPLAY
_ERROR_HEADERS = frozenset(
    {h.ERROR_STAGE, h.ERROR_REASON, h.ORIGINAL_TOPIC, h.ORIGINAL_PARTITION, h.ORIGINAL_OFFSET, REPLAY_HEADER}
)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    partition: int
    offset: int
    stage: str
    reason: str
    original_topic: str
    original_partition: int | None
    original_offset: int | None
    message_id: str | None
    message_type: str | None
    source: str | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    def replay_topic(self, topics: Topics) -> str | None:
        """Where the record re-enters: its ingress topic, or its sender's for a delivery failure."""
        if topics.tenant_of_ingress(self.original_topic) is not None:
            return self.original_topic
        tenant = tenant_of_source(self.source) if self.source else None
        return topics.ingress(tenant) if tenant else None


def _text(headers: dict[str, bytes], name: str) -> str:
    return headers.get(name, b"").decode("utf-8", "replace")


def _int(headers: dict[str, bytes], name: str) -> int | None:
    raw = _text(headers, name)
    return int(raw) if raw.isdigit() else None


def _attribute(value: bytes | None, headers: dict[str, bytes], name: str) -> str | None:
    """A CloudEvents attribute, best effort, and only if it cannot carry a CPR."""
    found: object = _text(headers, f"ce_{name}") or None
    if found is None:
        try:
            raw = codec.loads(value or b"")
        except ParseError:
            return None
        found = raw.get(name) if isinstance(raw, dict) else None
    if not isinstance(found, str) or len(found) > 200 or contains_cpr(found):
        return None
    return found if found.isprintable() else None


async def list_dead_letters(
    kafka: KafkaSettings, topics: Topics, *, limit: int | None = None
) -> list[DeadLetter]:
    """The dead letters, oldest first (the newest `limit` when given)."""
    letters: list[DeadLetter] = []
    async for record in read_records(kafka, topics.dlq):
        headers = {k: bytes(v) for k, v in record.headers or ()}
        letters.append(
            DeadLetter(
                partition=record.partition,
                offset=record.offset,
                stage=_text(headers, h.ERROR_STAGE) or "unknown",
                reason=_text(headers, h.ERROR_REASON),
                original_topic=_text(headers, h.ORIGINAL_TOPIC),
                original_partition=_int(headers, h.ORIGINAL_PARTITION),
                original_offset=_int(headers, h.ORIGINAL_OFFSET),
                message_id=_attribute(record.value, headers, "id"),
                message_type=_attribute(record.value, headers, "type"),
                source=_attribute(record.value, headers, "source"),
                key=record.key,
                value=record.value,
                headers=tuple((k, v) for k, v in headers.items() if k not in _ERROR_HEADERS),
            )
        )
    letters.sort(key=lambda d: (d.original_topic, d.original_partition or 0, d.original_offset or 0))
    return letters[-limit:] if limit else letters


async def replay_dead_letters(
    kafka: KafkaSettings,
    topics: Topics,
    chosen: Callable[[DeadLetter], bool],
    *,
    only_new: bool = False,
) -> tuple[int, list[DeadLetter]]:
    """Re-publish the chosen dead letters; returns (replayed, skipped for having no ingress).

    With `only_new`, letters an earlier `only_new` replay already sent are left
    out: how far replays have got is kept as the offsets of the consumer group
    `<prefix>-dlq-replay`, so Kafka itself remembers it.
    """
    letters = [d for d in await list_dead_letters(kafka, topics) if chosen(d)]
    progress = make_consumer(kafka, group_id=f"{topics.prefix}-dlq-replay", client_id="prik-dlq-replay")
    with kafka_errors(f"connecting to Kafka at {kafka.bootstrap}"):
        await progress.start()
    try:
        if only_new:
            done = await _replayed_up_to(progress, topics, letters)
            letters = [d for d in letters if d.offset >= done.get(d.partition, 0)]
        skipped = [d for d in letters if d.replay_topic(topics) is None]
        await _publish(kafka, topics, letters)
        if only_new and letters:
            ends: dict[TopicPartition, int] = {}
            for d in letters:
                tp = TopicPartition(topics.dlq, d.partition)
                ends[tp] = max(ends.get(tp, 0), d.offset + 1)
            with kafka_errors("recording how far the replay got"):
                await progress.commit(ends)
    finally:
        await progress.stop()
    return len(letters) - len(skipped), skipped


async def _replayed_up_to(
    progress: AIOKafkaConsumer, topics: Topics, letters: list[DeadLetter]
) -> dict[int, int]:
    partitions = sorted({d.partition for d in letters})
    progress.assign([TopicPartition(topics.dlq, p) for p in partitions])
    done: dict[int, int] = {}
    with kafka_errors("reading how far earlier replays got"):
        for p in partitions:
            committed = await progress.committed(TopicPartition(topics.dlq, p))
            done[p] = committed or 0
    return done


async def _publish(kafka: KafkaSettings, topics: Topics, letters: list[DeadLetter]) -> None:
    producer = make_producer(kafka, client_id="prik-dlq-replay")
    with kafka_errors(f"connecting to Kafka at {kafka.bootstrap}"):
        await producer.start()
    try:
        sent = []
        for letter in letters:
            topic = letter.replay_topic(topics)
            if topic is None:
                continue
            marker = f"{topics.dlq}:{letter.partition}:{letter.offset}".encode()
            headers = [*letter.headers, (REPLAY_HEADER, marker)]
            with kafka_errors(f"replaying to {topic}"):
                sent.append(await producer.send(topic, letter.value, key=letter.key, headers=headers))
        with kafka_errors("replaying dead letters"):
            for future in sent:
                await future
    finally:
        await producer.stop()
