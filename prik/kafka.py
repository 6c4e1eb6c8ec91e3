"""aiokafka clients with prik's safe defaults, and errors translated at the edge.

Every producer is idempotent with acks=all; every consumer commits manually,
says where to start explicitly and reads only committed transactional data.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.errors import (
    OutOfOrderSequenceNumber,
    ProducerFenced,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnknownTopicOrPartitionError,
)

from contracts import KafkaError, NotAuthorisedError

from .settings import KafkaSettings

__all__ = [
    "FATAL_PRODUCER_ERRORS",
    "admin_client",
    "kafka_errors",
    "make_consumer",
    "make_producer",
    "translate",
]

# After these the producer's state is wedged (aiokafka #1017): only a new
# producer, not a retry, gets going again.
FATAL_PRODUCER_ERRORS: tuple[type[AIOKafkaError], ...] = (
    OutOfOrderSequenceNumber,
    ProducerFenced,
    TransactionalIdAuthorizationFailed,
)


def make_producer(
    kafka: KafkaSettings,
    *,
    transactional_id: str | None = None,
    linger_ms: int = 5,
    client_id: str = "prik",
) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **kafka.client_options(),
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        transactional_id=transactional_id,
        linger_ms=linger_ms,
        max_batch_size=256 * 1024,
        request_timeout_ms=30_000,
    )


def make_consumer(
    kafka: KafkaSettings,
    *topics: str,
    group_id: str | None,
    auto_offset_reset: Literal["earliest", "latest", "none"] = "earliest",
    client_id: str = "prik",
    **extra: Any,  # noqa: ANN401 - passed through to aiokafka's many tuning knobs
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        **kafka.client_options(),
        client_id=client_id,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset=auto_offset_reset,
        isolation_level="read_committed",
        **extra,
    )


def translate(exc: AIOKafkaError, doing: str) -> KafkaError | NotAuthorisedError:
    """An aiokafka error as a prik error with one readable line."""
    name = type(exc).__name__
    if isinstance(exc, TopicAuthorizationFailedError | TransactionalIdAuthorizationFailed):
        return NotAuthorisedError(f"{doing}: not authorised ({name})")
    if isinstance(exc, UnknownTopicOrPartitionError):
        return KafkaError(f"{doing}: topic does not exist (run `prik topics apply`)")
    text = str(exc).strip() or name
    if text != name and not text.startswith(name):
        text = f"{name}: {text}"
    return KafkaError(f"{doing}: {text}", retriable=bool(getattr(exc, "retriable", False)))


@contextlib.contextmanager
def kafka_errors(doing: str) -> Iterator[None]:
    """Translate aiokafka errors raised inside the block into prik errors."""
    try:
        yield
    except AIOKafkaError as exc:
        raise translate(exc, doing) from exc


@contextlib.asynccontextmanager
async def admin_client(kafka: KafkaSettings) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(**kafka.client_options(), client_id="prik-admin")
    with kafka_errors(f"connecting to Kafka at {kafka.bootstrap}"):
        await admin.start()
    try:
        yield admin
    finally:
        await admin.close()
