"""The secure tier's world: tenants, topics, users and ACLs on the session's secure broker.

One world for the whole tier, applied once: tenant ids carry a per-session
suffix, and some are prefixes of others on purpose (`kommune<u>-01` and
`kommune<u>-0101`, `lps<u>-x` and `lps<u>-xmo`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)

from contracts import Tenants, Topics, parse_tenants
from deploy.acls import ROUTER_USER, _upsert, apply_access
from deploy.credentials import password_file
from deploy.topics import apply_topics
from prik.kafka import confluent_admin, login_works, make_consumer, make_producer
from prik.runner import run_to_end, sockets_closed
from prik.settings import KafkaSettings

if TYPE_CHECKING:
    # Only the type: importing tests.conftest at run time would load the root conftest a second time.
    from tests.conftest import SecureKafka

ALLOWED = "allowed"
REFUSED = "refused"


@dataclass(frozen=True)
class SecureWorld:
    kafka: SecureKafka
    topics: Topics
    tenants: Tenants
    tenants_file: Path
    # Short role names -> tenant ids of this session.
    ids: dict[str, str]

    def as_user(self, user: str) -> KafkaSettings:
        return self.kafka.as_user(user)

    def principal(self, name: str) -> KafkaSettings:
        """A client of role name `name` (`video`, `k01`, ..., `router`, `stranger`)."""
        return self.as_user(self.user(name))

    def user(self, name: str) -> str:
        return ROUTER_USER if name == "router" else self.ids[name]

    def admin(self) -> KafkaSettings:
        return self.kafka.admin()

    def every_topic(self) -> list[str]:
        t = self.topics
        names = [t.ingress(i) for i in self.tenants.ids] + [t.replies(i) for i in self.tenants.ids]
        names += [t.deliver(i) for i in self.tenants.lps_ids]
        return [*names, t.dlq, t.directory, t.tasks]


def tenants_toml(ids: dict[str, str]) -> str:
    producers = [ids["video"], ids["k01"], ids["k0101"]]
    # `stranger` is no tenant.
    lpses = [ids["lps-x"], ids["lps-xmo"]]
    out = [
        f'[[tenant]]\nid = "{p}"\nrole = "producer"\nmay_send = ["dk.prik.advisory.referral-status.v1"]\n'
        for p in producers
    ]
    out += [f'[[tenant]]\nid = "{lps}"\nrole = "lps"\n' for lps in lpses]
    return "\n".join(out)


@pytest.fixture(scope="session")
def secure_world(secure_kafka: SecureKafka, tmp_path_factory: pytest.TempPathFactory) -> SecureWorld:
    u = uuid.uuid4().hex[:6]
    ids = {
        "video": f"video{u}",
        "k01": f"kommune{u}-01",
        "k0101": f"kommune{u}-0101",
        "lps-x": f"lps{u}-x",
        "lps-xmo": f"lps{u}-xmo",
        # A user Kafka knows, with no ACL at all: logged in, and allowed nothing.
        "stranger": f"stranger{u}",
    }
    text = tenants_toml(ids)
    tenants_file = tmp_path_factory.mktemp("secure-world") / "tenants.toml"
    tenants_file.write_text(text)
    world = SecureWorld(secure_kafka, Topics(f"s{u}"), parse_tenants(text), tenants_file, ids)

    async def provision() -> None:
        await apply_topics(world.admin(), world.topics, world.tenants)
        await apply_access(world.admin(), world.topics, world.tenants, secure_kafka.credentials)
        stranger = password_file(secure_kafka.credentials, ids["stranger"]).read()
        _upsert(confluent_admin(world.admin()), {ids["stranger"]: stranger}, 30)
        for _ in range(40):
            if await login_works(world.principal("stranger")):
                break
            await asyncio.sleep(0.25)
        # One record in every topic: a read that is allowed then always has something to return.
        producer = make_producer(world.admin())
        await producer.start()
        try:
            for topic in world.every_topic():
                await producer.send_and_wait(topic, b"seed", key=b"seed", partition=0)
        finally:
            await producer.stop()

    run_to_end(provision())
    return world


# -- one operation, allowed or refused by Kafka ------------------------------------


async def try_produce(producer: AIOKafkaProducer, topic: str, value: bytes) -> str:
    """Produce one record; `refused` only when Kafka says not authorised."""
    try:
        await producer.send_and_wait(topic, value, key=b"matrix", partition=0)
    except TopicAuthorizationFailedError:
        return REFUSED
    return ALLOWED


async def try_read(consumer: AIOKafkaConsumer, topic: str) -> str:
    """Fetch partition 0 from the start; `allowed` only when the seed record comes back."""
    try:
        # Without DESCRIBE the topic's metadata is refused, and aiokafka would wait on it for ever.
        await consumer._client._wait_on_metadata(topic)
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        batches = await consumer.getmany(tp, timeout_ms=10_000)
    except TopicAuthorizationFailedError:
        return REFUSED
    assert batches.get(tp), f"{topic}: neither refused nor read"
    return ALLOWED


async def try_join(kafka: KafkaSettings, topic: str, group: str) -> str:
    """Join `group` subscribed to `topic` (a topic the principal may read); `allowed` once assigned."""
    consumer = make_consumer(kafka, topic, group_id=group, client_id="prik-matrix")
    try:
        await consumer.start()
        for _ in range(100):
            await consumer.getmany(timeout_ms=100)
            if consumer.assignment():
                return ALLOWED
    except GroupAuthorizationFailedError:
        return REFUSED
    finally:
        await consumer.stop()
    pytest.fail(f"group {group}: neither refused nor joined")


async def try_find_group(kafka: KafkaSettings, group: str) -> str:
    """Ask for `group`'s coordinator (needs DESCRIBE on the group): for a principal that reads no topic."""
    async with started_consumer(kafka) as consumer:
        try:
            await consumer._client.coordinator_lookup(0, group)
        except GroupAuthorizationFailedError:
            return REFUSED
    return ALLOWED


async def try_transaction(kafka: KafkaSettings, transactional_id: str) -> str:
    producer = make_producer(kafka, transactional_id=transactional_id, client_id="prik-matrix")
    try:
        await producer.start()
    except TransactionalIdAuthorizationFailed:
        return REFUSED
    finally:
        await producer.stop()
    return ALLOWED


@asynccontextmanager
async def started_producer(kafka: KafkaSettings) -> AsyncIterator[AIOKafkaProducer]:
    producer = make_producer(kafka, client_id="prik-matrix")
    try:
        await producer.start()
        yield producer
    finally:
        await producer.stop()


@asynccontextmanager
async def started_consumer(kafka: KafkaSettings) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = make_consumer(kafka, group_id=None, client_id="prik-matrix", fetch_max_wait_ms=50)
    try:
        await consumer.start()
        yield consumer
    finally:
        await consumer.stop()


async def read_values(kafka: KafkaSettings, topics: Iterable[str]) -> dict[str, list[bytes]]:
    """Every record value in `topics`, read to their current ends (as whoever `kafka` logs in as)."""
    out: dict[str, list[bytes]] = {}
    async with started_consumer(kafka) as consumer:
        for topic in topics:
            partitions = await consumer._client._wait_on_metadata(topic)
            tps = [TopicPartition(topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            values: list[bytes] = []
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for records in (await consumer.getmany(*tps, timeout_ms=1000)).values():
                    values += [r.value for r in records if r.value is not None]
            out[topic] = values
    return out


@pytest.fixture
def world(secure_world: SecureWorld) -> SecureWorld:
    """The session's secure world, under a shorter name."""
    return secure_world


@pytest.fixture(autouse=True)
async def tls_sockets_closed() -> AsyncIterator[None]:
    """Let each test's TLS sockets finish closing before its event loop ends.

    aiokafka closes its bootstrap connection without waiting, and a TLS close
    takes a round trip: a loop that ends first reports an "unclosed transport".
    """
    yield
    await sockets_closed()
