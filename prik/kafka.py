"""Kafka clients with prik's safe defaults, and errors translated at the edge.

Every producer is idempotent with acks=all; every consumer commits manually,
says where to start explicitly and reads only committed transactional data.
aiokafka carries the data; confluent-kafka's admin client only does what
aiokafka's cannot (ACLs and SCRAM users, for `prik topics apply` in secure mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.client import AIOKafkaClient
from aiokafka.conn import AIOKafkaConnection
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnknownTopicOrPartitionError,
)
from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.protocol.admin import DescribeAclsRequest
from confluent_kafka import Consumer, Producer
from confluent_kafka import KafkaError as ConfluentError
from confluent_kafka import KafkaException as ConfluentException
from confluent_kafka.admin import AdminClient

from contracts import KafkaError, NotAuthorisedError

from .logs import get_logger
from .partitioning import KeyPartitioner
from .settings import KafkaSettings

__all__ = [
    "FATAL_PRODUCER_ERRORS",
    "admin_client",
    "confluent_admin",
    "confluent_errors",
    "confluent_group_consumer",
    "confluent_reader",
    "confluent_transactional_producer",
    "kafka_connection",
    "kafka_errors",
    "login_works",
    "make_consumer",
    "make_producer",
    "may_describe_cluster",
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
        # Kafka's partitions for the same keys as aiokafka's default, at a fraction of its CPU.
        partitioner=KeyPartitioner(),
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


_NOT_AUTHORISED: tuple[type[AIOKafkaError], ...] = (
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    GroupAuthorizationFailedError,
    ClusterAuthorizationFailedError,
)


def translate(exc: AIOKafkaError, doing: str) -> KafkaError | NotAuthorisedError:
    """An aiokafka error as a prik error with one readable line."""
    name = type(exc).__name__
    if isinstance(exc, SaslAuthenticationFailed):
        return NotAuthorisedError(f"{doing}: Kafka refused the login (wrong user name or password)")
    if isinstance(exc, _NOT_AUTHORISED):
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
    doing = f"connecting to Kafka at {kafka.bootstrap}"
    try:
        await admin.start()
    except KafkaConnectionError as exc:
        await admin.close()
        # aiokafka reports a refused login as "unable to bootstrap"; say which it was.
        if kafka.sasl and not await login_works(kafka):
            msg = f"{doing}: Kafka refused the login of user {kafka.username} (wrong user name or password)"
            raise NotAuthorisedError(msg) from exc
        raise translate(exc, doing) from exc
    except AIOKafkaError as exc:
        await admin.close()
        raise translate(exc, doing) from exc
    try:
        yield admin
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def kafka_connection(
    host: str, port: int, options: dict[str, object], within: float = 10.0
) -> AsyncIterator[AIOKafkaConnection]:
    """One raw connection, logged in as `options` say, closed and waited for on the way out.

    TLS closes in the background (close_notify both ways), and aiokafka does
    not wait for it: a short event loop that ends first leaves the socket behind.
    """
    had_transport = False

    def closing(_conn: AIOKafkaConnection, _reason: object) -> None:
        # aiokafka calls this only when closing a connection that was made.
        nonlocal had_transport
        had_transport = True

    conn = AIOKafkaConnection(host, port, request_timeout_ms=int(within * 1000), on_close=closing, **options)
    try:
        await asyncio.wait_for(conn.connect(), within)
        yield conn
    finally:
        # close() hands back the future that resolves once the transport is gone.
        closed = conn.close()
        if had_transport and closed is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(closed), 2.0)


async def login_works(kafka: KafkaSettings, within: float = 10.0) -> bool:
    """Whether the first bootstrap broker accepts `kafka`'s user name and password.

    False only for a refused login; any other failure (the broker is down, TLS
    does not verify) is a prik error, so a wrong CA never reads as a wrong password.
    """
    options = kafka.client_options()
    host, _, port = str(options.pop("bootstrap_servers")).split(",")[0].strip().rpartition(":")
    try:
        with kafka_errors(f"logging in to Kafka at {host}:{port} as {kafka.username}"):
            async with kafka_connection(host, int(port), options, within):
                pass
    except NotAuthorisedError:
        return False
    except (OSError, TimeoutError) as exc:
        msg = f"logging in to Kafka at {host}:{port}: {exc}"
        raise KafkaError(msg, retriable=True) from exc
    return True


# Kafka's codes in a DescribeAcls probe: ResourceType TOPIC, PatternType LITERAL, Operation/Permission ANY.
_TOPIC, _LITERAL, _ANY = 2, 3, 1
_CLUSTER_AUTHORIZATION_FAILED = 31


async def may_describe_cluster(kafka: KafkaSettings) -> bool:
    """Whether `kafka`'s user may DESCRIBE the cluster (read ACLs and SCRAM users): the super users may.

    Asked with aiokafka because librdkafka 2.16 aborts the whole process when
    Kafka refuses it a DescribeUserScramCredentials (and quietly answers an
    empty list to a refused DescribeAcls).
    """
    client = AIOKafkaClient(**kafka.client_options(), client_id="prik-admin")
    try:
        with kafka_errors(f"connecting to Kafka at {kafka.bootstrap}"):
            await client.bootstrap()
            node = client.get_random_node()
            probe = DescribeAclsRequest(_TOPIC, "prik-probe", _LITERAL, None, None, _ANY, _ANY)
            response = await client.send(node, probe)
    finally:
        await client.close()
    return bool(response.error_code != _CLUSTER_AUTHORIZATION_FAILED)


# -- confluent-kafka (librdkafka) ------------------------------------------------

# Kafka error codes that mean "who you are may not do this", or "who you are is not known".
_CONFLUENT_REFUSALS = frozenset(
    {
        ConfluentError.TOPIC_AUTHORIZATION_FAILED,
        ConfluentError.GROUP_AUTHORIZATION_FAILED,
        ConfluentError.CLUSTER_AUTHORIZATION_FAILED,
        ConfluentError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        ConfluentError.DELEGATION_TOKEN_AUTHORIZATION_FAILED,
        ConfluentError.SASL_AUTHENTICATION_FAILED,
        ConfluentError._AUTHENTICATION,  # noqa: SLF001 - librdkafka's local error codes start with "_"
    }
)
_CONFLUENT_TIMEOUTS = frozenset(
    {ConfluentError._TIMED_OUT, ConfluentError._TRANSPORT}  # noqa: SLF001 - librdkafka's local error codes
)


def _confluent_error(error: object) -> tuple[int | None, str, bool]:
    if isinstance(error, ConfluentError):
        return error.code(), error.str() or error.name(), bool(error.retriable())
    return None, str(error) or type(error).__name__, False


def translate_confluent(exc: BaseException, doing: str) -> KafkaError | NotAuthorisedError:
    """A confluent-kafka error (a KafkaException, or a KafkaError from a future) as one prik line."""
    inner = exc.args[0] if isinstance(exc, ConfluentException) and exc.args else exc
    code, text, retriable = _confluent_error(inner)
    if code in _CONFLUENT_REFUSALS:
        # Kafka's own text for these can be a dump of its request object: the name says enough.
        name = inner.name() if isinstance(inner, ConfluentError) else text
        return NotAuthorisedError(f"{doing}: not authorised ({name})")
    if code in _CONFLUENT_TIMEOUTS:
        return KafkaError(f"{doing}: Kafka did not answer ({text})", retriable=True)
    return KafkaError(f"{doing}: {text}", retriable=retriable)


@contextlib.contextmanager
def confluent_errors(doing: str) -> Iterator[None]:
    """Translate confluent-kafka errors raised inside the block into prik errors."""
    try:
        yield
    except ConfluentException as exc:
        raise translate_confluent(exc, doing) from exc


class _ToStructlog(logging.Handler):
    """librdkafka's log lines into prik's structured log, never straight onto the user's terminal."""

    def emit(self, record: logging.LogRecord) -> None:
        log = get_logger("librdkafka")
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            log.error("librdkafka", detail=message)
        elif record.levelno >= logging.WARNING:
            log.warning("librdkafka", detail=message)
        else:
            log.debug("librdkafka", detail=message)


def _librdkafka_logger() -> logging.Logger:
    logger = logging.getLogger("prik.librdkafka")
    if not any(isinstance(h, _ToStructlog) for h in logger.handlers):
        logger.addHandler(_ToStructlog())
        # Its warnings repeat every retry of a refused connection; errors still show.
        logger.setLevel(logging.WARNING)
        logger.propagate = False
    return logger


def confluent_reader(kafka: KafkaSettings, client_id: str = "prik-reader") -> Consumer:
    """confluent-kafka's Consumer with prik's safe defaults, for assigned partitions only.

    read_committed, nothing committed: a caller assigns the partitions it reads and
    never joins the group its id names (librdkafka requires one).
    """
    return Consumer(
        {
            **kafka.confluent_config(),
            "client.id": client_id,
            "group.id": client_id,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        },
        logger=_librdkafka_logger(),
    )


def confluent_group_consumer(kafka: KafkaSettings, group_id: str, client_id: str = "prik") -> Consumer:
    """confluent-kafka's Consumer in a group, with prik's safe defaults (read_committed, manual commits)."""
    return Consumer(
        {
            **kafka.confluent_config(),
            "client.id": client_id,
            "group.id": group_id,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        },
        logger=_librdkafka_logger(),
    )


def confluent_transactional_producer(
    kafka: KafkaSettings, transactional_id: str, client_id: str = "prik"
) -> Producer:
    """confluent-kafka's Producer with prik's safe defaults: idempotent, acks=all, transactional."""
    return Producer(
        {
            **kafka.confluent_config(),
            "client.id": client_id,
            "transactional.id": transactional_id,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
        },
        logger=_librdkafka_logger(),
    )


def confluent_admin(kafka: KafkaSettings, timeout: float = 30.0) -> AdminClient:
    """confluent-kafka's AdminClient on the same connection settings as every other client."""
    return AdminClient(
        {**kafka.confluent_config(), "client.id": "prik-admin", "socket.timeout.ms": int(timeout * 1000)},
        logger=_librdkafka_logger(),
    )
