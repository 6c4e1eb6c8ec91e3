"""Reading one record that aiokafka cannot decode.

aiokafka decodes header names as strict UTF-8 while it unpacks a fetched batch;
any librdkafka client (kcat among them) can write a header name that is not, and
then every `getmany` raises `UnicodeDecodeError` for that partition, forever: a
poison pill below prik's own code. librdkafka reads such a record fine (only its
headers are unreadable), so the record at a given position is read here with
confluent-kafka and handed back with its key and value, and with
`unreadable` saying why its headers are missing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka import TopicPartition as RawPartition

from contracts import KafkaError
from contracts.headers import normalise_headers
from prik.kafka import confluent_reader
from prik.settings import KafkaSettings

__all__ = ["RawRecord", "read_one"]


@dataclass(frozen=True, slots=True)
class RawRecord:
    """Shaped like aiokafka's ConsumerRecord where the router reads it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    unreadable: str | None = None


def _read_one(kafka: KafkaSettings, topic: str, partition: int, offset: int, wait: float) -> RawRecord | None:
    consumer = confluent_reader(kafka, client_id="prik-quarantine")
    try:
        consumer.assign([RawPartition(topic, partition, offset)])
        message = consumer.poll(wait)
        if message is None:
            return None
        error = message.error()
        if error is not None:
            msg = f"reading {topic}[{partition}]@{offset}: {error.str()}"
            raise KafkaError(msg, retriable=True)
        found = message.offset()
        if found is None:
            return None
        unreadable: str | None = None
        try:
            headers = normalise_headers(message.headers())
        except (SystemError, UnicodeDecodeError):
            headers, unreadable = (), "a header name is not valid UTF-8"
        return RawRecord(
            topic=topic,
            partition=partition,
            offset=found,
            key=message.key(),
            value=message.value(),
            headers=headers,
            unreadable=unreadable,
        )
    except KafkaException as exc:
        msg = f"reading {topic}[{partition}]@{offset}: {exc}"
        raise KafkaError(msg, retriable=True) from None
    finally:
        consumer.close()


async def read_one(
    kafka: KafkaSettings, topic: str, partition: int, offset: int, wait: float = 10.0
) -> RawRecord | None:
    """The first committed record at or after `offset`, or None when none arrives within `wait` seconds."""
    # librdkafka's poll blocks: off the event loop, so the router's heartbeats go on.
    return await asyncio.to_thread(_read_one, kafka, topic, partition, offset, wait)
