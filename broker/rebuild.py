"""Rebuild a partition's dedup window from the partition itself.

The window is partition state and the ingress log is its source of truth: when
a partition comes to this instance (a restart, a rebalance), the records its
previous owner committed within the window are read again, so a sender's
re-send right after a router restart is still dropped.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts import ParseError, codec
from prik.kafka import kafka_errors, make_consumer
from prik.logs import get_logger
from prik.settings import KafkaSettings

from .dedup import DedupWindow

__all__ = ["rebuild_dedup"]

_log = get_logger(__name__)
# Bounds the start-up read; at prik's expected rates a window holds far fewer.
_MAX_RECORDS_PER_PARTITION = 100_000


def _identity(value: bytes | None, headers: dict[str, bytes]) -> tuple[str, str] | None:
    source, message_id = headers.get("ce_source"), headers.get("ce_id")
    if source is not None and message_id is not None:
        return source.decode("utf-8", "replace"), message_id.decode("utf-8", "replace")
    try:
        raw = codec.loads(value or b"")
    except ParseError:
        return None
    if isinstance(raw, dict) and isinstance(raw.get("source"), str) and isinstance(raw.get("id"), str):
        return raw["source"], raw["id"]
    return None


async def rebuild_dedup(
    kafka: KafkaSettings,
    group: AIOKafkaConsumer,
    committed: Mapping[TopicPartition, int | None],
    window: DedupWindow,
) -> int:
    """Read back what was committed within the window, up to `committed`; returns records seen."""
    if not committed:
        return 0
    now_ms = int(time.time() * 1000)
    since = now_ms - int(window.window_seconds * 1000)
    with kafka_errors("rebuilding the dedup window"):
        wanted = [tp for tp, offset in committed.items() if offset]
        if not wanted:
            return 0
        starts = await group.offsets_for_times(dict.fromkeys(wanted, since))
    reader = make_consumer(kafka, group_id=None, client_id="prik-router-dedup")
    seen = 0
    with kafka_errors("rebuilding the dedup window"):
        await reader.start()
        try:
            for tp in wanted:
                start, end = starts.get(tp), committed[tp]
                if start is None or end is None or start.offset >= end:
                    continue
                last = min(end, start.offset + _MAX_RECORDS_PER_PARTITION)
                seen += await _read_range(reader, tp, start.offset, last, window=window, now_ms=now_ms)
        finally:
            await reader.stop()
    _log.info("router.dedup_rebuilt", partitions=len(wanted), records=seen)
    return seen


async def _read_range(
    reader: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int, *, window: DedupWindow, now_ms: int
) -> int:
    reader.assign([tp])
    reader.seek(tp, start)
    seen = 0
    while await reader.position(tp) < end:
        batch = await reader.getmany(tp, timeout_ms=500, max_records=5000)
        for record in batch.get(tp, []):
            if record.offset >= end:
                return seen
            identity = _identity(record.value, {k: bytes(v) for k, v in record.headers or ()})
            if identity is not None:
                age = max(0.0, (now_ms - record.timestamp) / 1000)
                window.add(tp.topic, tp.partition, *identity, age=age)
                seen += 1
    return seen
