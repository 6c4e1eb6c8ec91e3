"""Whole client paths on the secure broker, each principal on its own login.

The router's exactly-once cycle (consume, produce, commit offsets, all in one
transaction) needs every one of its ACLs at once; librdkafka (confluent-kafka)
gets its connection from the same settings object as aiokafka.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from aiokafka import TopicPartition
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from pydantic import SecretStr

from prik.kafka import confluent_admin, make_consumer, make_producer

from .conftest import SecureWorld, read_values, started_producer

pytestmark = [pytest.mark.kafka, pytest.mark.secure]


async def test_the_router_cycle_runs_on_the_routers_acls(world: SecureWorld) -> None:
    t, ids = world.topics, world.ids
    marker = f"cycle-{uuid.uuid4().hex}".encode()
    async with started_producer(world.principal("video")) as video:
        await video.send_and_wait(t.ingress(ids["video"]), marker, key=b"123456789012")

    router = world.principal("router")
    consumer = make_consumer(router, group_id=f"{t.prefix}-router", client_id="prik-router")
    consumer.subscribe(pattern=t.ingress_pattern)
    producer = make_producer(router, transactional_id=f"{t.prefix}-router-cycle", client_id="prik-router")
    await consumer.start()
    await producer.start()
    try:
        found = None
        for _ in range(100):
            batches = await consumer.getmany(timeout_ms=200)
            found = next((r for rs in batches.values() for r in rs if r.value == marker), None)
            if found is not None:
                break
        assert found is not None, "the router never read the message"
        tp = TopicPartition(found.topic, found.partition)
        async with producer.transaction():
            await producer.send_and_wait(t.deliver(ids["lps-x"]), marker, key=b"123456789012")
            await producer.send_and_wait(t.replies(ids["video"]), marker, key=b"receipt")
            await producer.send_and_wait(t.tasks, marker, key=b"task")
            await producer.send_and_wait(t.dlq, marker, key=b"letter")
            await producer.send_offsets_to_transaction({tp: found.offset + 1}, f"{t.prefix}-router")
        # The offsets become visible once the commit markers are written, a moment after the commit.
        for _ in range(50):
            if await consumer.committed(tp) == found.offset + 1:
                break
            await asyncio.sleep(0.1)
        assert await consumer.committed(tp) == found.offset + 1
    finally:
        await producer.stop()
        await consumer.stop()

    # Each reader on its own login, read_committed: the transaction is in.
    delivered = await read_values(world.principal("lps-x"), [t.deliver(ids["lps-x"])])
    replied = await read_values(world.principal("video"), [t.replies(ids["video"])])
    assert marker in delivered[t.deliver(ids["lps-x"])]
    assert marker in replied[t.replies(ids["video"])]


def test_librdkafka_clients_use_the_same_settings(world: SecureWorld) -> None:
    t, lps = world.topics, world.ids["lps-xmo"]
    config = world.principal("lps-xmo").confluent_config()
    outcomes: dict[str, KafkaError | None] = {}

    def report(error: KafkaError | None, message: Message) -> None:
        outcomes[message.topic() or ""] = error

    quiet = logging.getLogger("tests.librdkafka")
    producer = Producer({**config, "enable.idempotence": True, "acks": "all"}, logger=quiet)
    producer.produce(t.ingress(lps), b"from librdkafka", on_delivery=report)
    # It may describe its delivery topic, but not write it.
    producer.produce(t.deliver(lps), b"from librdkafka", on_delivery=report)
    assert producer.flush(30) == 0
    assert outcomes[t.ingress(lps)] is None
    refused = outcomes[t.deliver(lps)]
    assert refused is not None
    assert refused.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

    consumer = Consumer(
        {
            **config,
            "group.id": f"{t.prefix}-{lps}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        },
        logger=quiet,
    )
    try:
        consumer.subscribe([t.deliver(lps)])
        message = None
        for _ in range(60):
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                break
        assert message is not None
        assert message.error() is None
        assert message.value() == b"seed"
    finally:
        consumer.close()


def test_librdkafka_logs_go_to_prik_log_not_the_terminal(
    world: SecureWorld, capfd: pytest.CaptureFixture[str]
) -> None:
    wrong = world.admin().model_copy(update={"password": SecretStr("wrong"), "password_file": None})
    admin = confluent_admin(wrong, timeout=2)
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=2)
    admin.poll(0.5)
    err = capfd.readouterr().err
    # librdkafka's raw lines look like `%3|1700000000.000|FAIL|...`.
    assert "%3|" not in err
    assert "wrong" not in err
