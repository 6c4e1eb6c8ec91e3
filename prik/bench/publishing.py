"""`prik bench publisher`: prik's `Publisher.publish_many` against raw aiokafka producing the same bytes.

Both publish the same N video-queue notices onto the sender's ingress topic with
the client factory's producer (acks=all, idempotent, `make_producer`), in chunks
of 1,000 with four chunks in flight, and wait for every acknowledgement:

- `baseline`: plain `AIOKafkaProducer.send` of the notices' bytes, keys and
  headers, encoded before the clock starts;
- `prik`: `Publisher.publish_many` on the notices themselves (so the Publisher's
  own encoding, checks and results are part of what it costs).

Rounds alternate baseline, prik, baseline, prik…; each stage's best round is what
the ratio compares (the machine is shared: the best is the least disturbed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from contracts import STRUCTURED_CONTENT_TYPE, Message, to_bytes
from contracts.headers import CONTENT_TYPE
from prik.kafka import kafka_errors, make_producer
from prik.settings import Settings
from producers import Publisher, key_of

from .latency import peak_rss_mb
from .stage_support import SENDER, Rounds, Say, end_offsets_total, notices, provisioned

__all__ = ["PUBLISHER_TARGET", "bench_publisher"]

PUBLISHER_TARGET = 0.8
_CHUNK = 1000
_IN_FLIGHT = 4
_WARM_UP = 200

SendChunk = Callable[[int, int], Awaitable[int]]


async def _timed(send: SendChunk, total: int) -> tuple[float, float, int]:
    """Seconds and CPU seconds to send `total` messages in chunks, `_IN_FLIGHT` at once; the acknowledged."""
    gate = asyncio.Semaphore(_IN_FLIGHT)

    async def chunk(start: int) -> int:
        async with gate:
            return await send(start, min(_CHUNK, total - start))

    began, cpu = time.perf_counter(), time.process_time()
    acknowledged = await asyncio.gather(*(chunk(start) for start in range(0, total, _CHUNK)))
    return time.perf_counter() - began, time.process_time() - cpu, sum(acknowledged)


async def bench_publisher(base: Settings, messages: int, rounds: int, say: Say) -> dict[str, Any]:
    """Alternate rounds of raw aiokafka and `Publisher.publish_many`; rates, counts and the ratio."""
    say(f"building {messages} notices")
    built: Sequence[Message] = notices(messages)
    # The baseline's bytes: exactly what the Publisher sends for the same notices.
    encoded = [(key_of(m).encode(), to_bytes(m)) for m in built]
    header_value = STRUCTURED_CONTENT_TYPE.encode()
    async with provisioned(base, "pub") as settings:
        topic = settings.topics.ingress(SENDER)
        producer = make_producer(settings.kafka, client_id="prik-bench-raw")
        with kafka_errors(f"connecting to Kafka at {settings.kafka.bootstrap}"):
            await producer.start()
        try:
            async with Publisher(settings.kafka, SENDER, settings.topics) as publisher:

                async def raw(start: int, count: int) -> int:
                    futures = []
                    for key, value in encoded[start : start + count]:
                        headers = [(CONTENT_TYPE, header_value)]
                        futures.append(await producer.send(topic, value, key=key, headers=headers))
                    acks = await asyncio.gather(*futures)
                    return sum(1 for meta in acks if meta.offset >= 0)

                async def prik(start: int, count: int) -> int:
                    results = await publisher.publish_many(built[start : start + count])
                    return sum(1 for result in results if result.offset >= 0)

                # Connections, metadata and producer ids, before any clock runs.
                await raw(0, min(_WARM_UP, messages))
                await prik(0, min(_WARM_UP, messages))
                stages = {"baseline": Rounds(), "prik": Rounds()}
                acknowledged = {"baseline": 0, "prik": 0}
                for n in range(1, rounds + 1):
                    for name, send in (("baseline", raw), ("prik", prik)):
                        say(f"round {n}/{rounds}: {name}")
                        seconds, cpu, acks = await _timed(send, messages)
                        stages[name].add(messages, seconds, cpu)
                        acknowledged[name] += acks
        finally:
            with kafka_errors("closing the producer"):
                await producer.stop()
        on_topic = await end_offsets_total(settings.kafka, topic)
    warm = 2 * min(_WARM_UP, messages)
    baseline = stages["baseline"].summary() | {"acknowledged": acknowledged["baseline"]}
    prik_figures = stages["prik"].summary() | {"acknowledged": acknowledged["prik"]}
    ratio = prik_figures["per_second"] / baseline["per_second"]
    return {
        "stage": "publisher",
        "bootstrap": base.kafka.bootstrap,
        "messages": messages,
        "rounds": rounds,
        "baseline": baseline,
        "prik": prik_figures,
        # Everything that reached the topic: both stages' rounds and the warm-ups.
        "on_topic": on_topic - warm,
        "ratio": round(ratio, 3),
        "target": PUBLISHER_TARGET,
        "met": ratio >= PUBLISHER_TARGET,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
