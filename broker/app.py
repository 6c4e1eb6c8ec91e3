"""The router as a FastStream application: the same `Router`, FastStream's transport.

This is the router's FastStream face: subscribers for ingress (by pattern),
the directory and the tasks topic, publishers for what the router writes, an
AsyncAPI description for free, and the in-memory test tier
(`TestKafkaBroker`). What FastStream cannot do is commit a batch's outputs and
its input offsets in one Kafka transaction; `prik broker run` therefore drives
the same `Router` with `TransactionalEngine` (aiokafka) instead.
"""

from __future__ import annotations

from collections.abc import Callable

from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker, KafkaMessage

from contracts import Tenants
from prik.settings import Settings

from .dedup import DedupWindow
from .records import Incoming
from .router import Batch, Router
from .tables import DirectoryTable, TaskTable

__all__ = ["build_app"]


def build_app(settings: Settings, tenants: Callable[[], Tenants]) -> tuple[FastStream, KafkaBroker, Router]:
    topics = settings.topics
    broker = KafkaBroker(settings.kafka.bootstrap, enable_idempotence=True, acks="all")
    router = Router(topics, tenants, DirectoryTable(), TaskTable(), DedupWindow())

    @broker.subscriber(topics.directory, auto_offset_reset="earliest", ack_policy=AckPolicy.MANUAL)
    async def on_directory(msg: KafkaMessage) -> None:
        record = msg.raw_message
        router.directory.apply(getattr(record, "key", None), getattr(record, "value", None))

    @broker.subscriber(topics.tasks, auto_offset_reset="earliest", ack_policy=AckPolicy.MANUAL)
    async def on_task(msg: KafkaMessage) -> None:
        record = msg.raw_message
        router.tasks.apply(getattr(record, "key", None), getattr(record, "value", None))

    @broker.subscriber(
        pattern=topics.ingress_pattern,
        group_id=f"{topics.prefix}-router",
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        # Commits after the handler, even when it raised: FastStream has no
        # commit-with-outputs, which is why production runs TransactionalEngine.
        ack_policy=AckPolicy.ACK,
    )
    async def on_ingress(msg: KafkaMessage) -> None:
        batch = Batch()
        routed = await router.route(Incoming.from_record(msg.raw_message), batch)
        for out in routed.outputs:
            await broker.publish(
                out.value,
                out.topic,
                key=out.key,
                headers={k: v.decode("utf-8", "replace") for k, v in out.headers},
            )
        router.commit(batch)

    return FastStream(broker), broker, router
