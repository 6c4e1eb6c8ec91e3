"""Read a whole topic without a consumer group: every partition, from the beginning."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from contracts import KafkaError
from prik.kafka import admin_client, kafka_errors, make_consumer
from prik.settings import KafkaSettings

__all__ = ["partitions_of", "read_records"]

_UNKNOWN_TOPIC = 3


async def partitions_of(kafka: KafkaSettings, topic: str) -> list[TopicPartition]:
    """All partitions of `topic`; a KafkaError when it does not exist."""
    # In secure mode Kafka hides a topic the user may not describe: it looks missing too.
    missing = f"topic {topic} does not exist, or this Kafka user may not read it (run `prik topics apply`)"
    async with admin_client(kafka) as admin:
        with kafka_errors(f"describing {topic}"):
            # Asking for a missing topic by name may auto-create it on some brokers.
            if topic not in await admin.list_topics():
                raise KafkaError(missing)
            (described,) = await admin.describe_topics([topic])
    if described["error_code"] == _UNKNOWN_TOPIC or not described["partitions"]:
        raise KafkaError(missing)
    if described["error_code"]:
        msg = f"describing {topic}: Kafka error code {described['error_code']}"
        raise KafkaError(msg, retriable=True)
    return sorted(TopicPartition(topic, p["partition"]) for p in described["partitions"])


async def read_records(
    kafka: KafkaSettings,
    topic: str,
    *,
    follow: bool = False,
    poll_ms: int = 500,
) -> AsyncGenerator[ConsumerRecord[bytes, bytes], None]:
    """Every committed record of `topic`, partition by partition in offset order.

    Without `follow` it stops at the end offsets seen when it started, so a
    busy topic cannot keep it reading forever; with `follow` it waits for more
    until cancelled. Group-less: nothing is committed and nobody else's
    position moves.
    """
    partitions = await partitions_of(kafka, topic)
    consumer = make_consumer(kafka, group_id=None, auto_offset_reset="earliest", client_id="prik-reader")
    with kafka_errors(f"connecting to Kafka at {kafka.bootstrap}"):
        await consumer.start()
    try:
        with kafka_errors(f"reading {topic}"):
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        remaining = set(partitions)
        while follow or remaining:
            if not follow:
                # Positions move past transaction markers too, so "position >= end" is
                # reached even when the last offset is a commit marker, not a record.
                for tp in list(remaining):
                    with kafka_errors(f"reading {topic}"):
                        if await consumer.position(tp) >= ends[tp]:
                            remaining.discard(tp)
                if not remaining:
                    break
            with kafka_errors(f"reading {topic}"):
                batch = await consumer.getmany(*([] if follow else remaining), timeout_ms=poll_ms)
            for tp, records in batch.items():
                for record in records:
                    if follow or record.offset < ends[tp]:
                        yield record
    finally:
        await consumer.stop()
