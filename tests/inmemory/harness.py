"""Two transports for one behaviour suite: FastStream's `TestKafkaBroker`, and `Router` + `Batch` directly.

Both expose the same face to the rule tests (`send`, `send_raw`, `receipts`,
`seen.messages(topic)`, `seen.header(...)`), so every rule is proven through the
FastStream app and against the pure router. The direct harness is a small
transactional transport: each batch's outputs land on the in-memory topics, and
its staged state reaches the router (`router.commit`), only when it commits;
a batch left uncommitted (an aborted transaction) leaves no trace.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from faststream.kafka import KafkaBroker, KafkaMessage, TestKafkaBroker

from broker import (
    Batch,
    DedupWindow,
    DirectoryTable,
    Incoming,
    Outgoing,
    Routed,
    Router,
    TaskTable,
    build_app,
)
from broker.router import NOTHING_STAGED, CatchUp, Staged
from contracts import (
    STRUCTURED_CONTENT_TYPE,
    Message,
    Receipt,
    Tenants,
    Topics,
    codec,
    parse,
    parse_tenants,
    to_binary,
    to_bytes,
)
from contracts import headers as h
from contracts.headers import normalise_headers
from prik.settings import Settings

TENANTS = parse_tenants((Path(__file__).parent.parent / "data" / "tenants.toml").read_text())
CLINIC = "123456789012"
OTHER_CLINIC = "223456789012"
UNKNOWN_CLINIC = "999999999999"
CPR = "0101901234"
# Which LPS serves which clinic, loaded into the directory of every harness.
DIRECTORY = ((CLINIC, "lps-xmo"), (OTHER_CLINIC, "lps-other"))

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class Record:
    """One record as a consumer of an output topic reads it."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = ()


@dataclass
class Captured:
    """What the router wrote, per topic, in the order it was written."""

    records: dict[str, list[Record]] = field(default_factory=lambda: defaultdict(list))

    def values(self, topic: str) -> list[bytes | None]:
        return [r.value for r in self.records[topic]]

    def messages(self, topic: str) -> list[Message]:
        return [parse(v) for v in self.values(topic)]

    def header(self, topic: str, name: str, index: int = -1) -> str:
        return dict(self.records[topic][index].headers)[name].decode()


def directory_value(lps: str) -> bytes:
    return codec.dumps({"lps": lps, "name": None, "ydernummer": None})


def encoded(message: Message, *, binary: bool = False) -> tuple[bytes, Headers]:
    """A message as a sender writes it: structured (with content-type) or binary (`ce_*` headers)."""
    if binary:
        value, headers = to_binary(message)
        return value, tuple(headers)
    return to_bytes(message), ((h.CONTENT_TYPE, STRUCTURED_CONTENT_TYPE.encode()),)


class Harness(ABC):
    """A transport that feeds ingress records to the router and captures what it writes."""

    topics: Topics
    seen: Captured
    router: Router

    @abstractmethod
    async def publish(self, topic: str, value: bytes, *, key: bytes | None, headers: Headers = ()) -> None:
        """Write one record to `topic`, and let the router (or table) consuming it handle it."""

    async def send(
        self, tenant: str, message: Message, *, binary: bool = False, headers: Headers = ()
    ) -> None:
        value, encoding = encoded(message, binary=binary)
        await self.publish(self.topics.ingress(tenant), value, key=b"k", headers=(*encoding, *headers))

    async def send_raw(self, tenant: str, value: bytes, headers: Headers = ()) -> None:
        await self.publish(self.topics.ingress(tenant), value, key=b"k", headers=headers)

    def receipts(self, tenant: str) -> list[Receipt]:
        return [m for m in self.seen.messages(self.topics.replies(tenant)) if isinstance(m, Receipt)]

    def output_topics(self) -> list[str]:
        """Every topic the router writes in these tests (the tasks topic aside)."""
        return [
            self.topics.deliver("lps-xmo"),
            self.topics.deliver("lps-other"),
            self.topics.dlq,
            *(self.topics.replies(t) for t in TENANTS.ids),
        ]


# -- FastStream ---------------------------------------------------------------------------


class FastStreamHarness(Harness):
    """`broker.build_app` under `TestKafkaBroker`: one record per handler call, committed after it."""

    def __init__(self, broker: KafkaBroker, topics: Topics, seen: Captured, router: Router) -> None:
        self.broker = broker
        self.topics = topics
        self.seen = seen
        self.router = router

    async def publish(self, topic: str, value: bytes, *, key: bytes | None, headers: Headers = ()) -> None:
        hdrs = {k: v.decode() for k, v in headers}
        await self.broker.publish(value, topic, key=key, headers=hdrs)


def _capture_into(seen: Captured) -> Callable[[KafkaMessage], Awaitable[None]]:
    # FastStream reads a handler's parameters as the message body: keep only `msg`.
    async def capture(msg: KafkaMessage) -> None:
        raw: Any = msg.raw_message  # an aiokafka ConsumerRecord: untyped
        record = Record(raw.topic, raw.key, raw.value, normalise_headers(raw.headers))
        seen.records[record.topic].append(record)

    return capture


@asynccontextmanager
async def faststream_harness(prefix: str) -> AsyncIterator[FastStreamHarness]:
    settings = Settings(topic_prefix=prefix)
    topics = settings.topics
    _app, broker, router = build_app(settings, lambda: TENANTS)
    seen = Captured()
    harness = FastStreamHarness(broker, topics, seen, router)
    for topic in harness.output_topics():
        broker.subscriber(topic)(_capture_into(seen))
    async with TestKafkaBroker(broker) as test_broker:
        harness.broker = test_broker
        for sor, lps in DIRECTORY:
            await test_broker.publish(directory_value(lps), topics.directory, key=sor.encode())
        yield harness


# -- Router + Batch, directly ------------------------------------------------------------------


async def _nothing_to_read() -> None:
    """No reader behind the direct harness: its tables hold everything written to their topics."""


class MissingTopicError(AssertionError):
    """The router wrote to a topic its batch was told does not exist: Kafka would drop or stall it."""


class UnsendableRecordError(AssertionError):
    """An output with neither key nor value: aiokafka refuses to send it ("Need at least one")."""


class Transaction:
    """One batch of the direct transport: route records, then `commit()` (or leave it: aborted)."""

    def __init__(self, harness: DirectHarness, ahead: Transaction | None = None) -> None:
        self._harness = harness
        # One snapshot per batch, as `TransactionalEngine` takes it.
        self.snapshot = frozenset(harness.existing)
        # Decided while `ahead` still commits, as the pipelined engine does.
        staged = Staged.of([ahead.batch]) if ahead is not None else NOTHING_STAGED
        self.batch: Batch = Batch(topic_exists=self.snapshot.__contains__, ahead=staged)
        self.decided: list[Routed] = []
        self.pending: list[Outgoing] = []
        self.committed = False

    async def route(self, rec: Incoming) -> Routed:
        routed = await self._harness.router.route(rec, self.batch)
        for out in routed.outputs:
            if out.topic not in self.snapshot:
                msg = f"the router wrote to {out.topic}, which does not exist"
                raise MissingTopicError(msg)
            if out.key is None and out.value is None:
                msg = f"an output to {out.topic} with neither key nor value"
                raise UnsendableRecordError(msg)
        self.decided.append(routed)
        self.pending.extend(routed.outputs)
        return routed

    async def send(self, tenant: str, message: Message, *, binary: bool = False) -> Routed:
        return await self.route(self._harness.record_of(tenant, message, binary=binary))

    def commit(self) -> None:
        assert not self.committed, "a batch commits once"
        self.committed = True
        for out in self.pending:
            self._harness.write(Record(out.topic, out.key, out.value, out.headers))
        self._harness.router.commit(self.batch)


class DirectHarness(Harness):
    """`Router.route` with a `Batch` per record (or per `transaction()`), outputs kept in memory."""

    def __init__(
        self,
        topics: Topics,
        *,
        tenants: Callable[[], Tenants] = lambda: TENANTS,
        missing: Iterable[str] = (),
        catch_up_directory: CatchUp | None = None,
        catch_up_tasks: CatchUp | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.topics = topics
        self.seen = Captured()
        self.router = Router(
            topics,
            tenants,
            DirectoryTable(),
            TaskTable(),
            DedupWindow(),
            clock=clock,
            catch_up_directory=catch_up_directory or _nothing_to_read,
            catch_up_tasks=catch_up_tasks or _nothing_to_read,
        )
        # What the cluster holds: every topic of the test's tenants, minus those a test takes away.
        self.existing = {
            *self.output_topics(),
            topics.directory,
            topics.tasks,
            *(topics.ingress(t) for t in TENANTS.ids),
        } - set(missing)
        self._offsets: dict[str, int] = defaultdict(int)
        for sor, lps in DIRECTORY:
            self.write(Record(topics.directory, sor.encode(), directory_value(lps)))

    def incoming(
        self, tenant: str, value: bytes | None, *, key: bytes | None = b"k", headers: Headers = ()
    ) -> Incoming:
        """The next record of `tenant`'s ingress topic, as a Kafka client would hand it over."""
        topic = self.topics.ingress(tenant)
        offset = self._offsets[topic]
        self._offsets[topic] += 1
        return Incoming(topic, 0, offset, key, value, headers)

    def record_of(self, tenant: str, message: Message, *, binary: bool = False) -> Incoming:
        """The next ingress record of `tenant`, carrying `message` as a sender encodes it."""
        value, headers = encoded(message, binary=binary)
        return self.incoming(tenant, value, headers=headers)

    def write(self, record: Record) -> None:
        """Append to a topic; the directory topic also feeds the router's table, as its reader does."""
        self.seen.records[record.topic].append(record)
        if record.topic == self.topics.directory:
            self.router.directory.apply(record.key, record.value)

    def begin(self, *, ahead: Transaction | None = None) -> Transaction:
        """A batch the test commits itself, or leaves uncommitted (the transaction aborted).

        With `ahead`: decided while that batch still commits (the engine's pipeline).
        """
        return Transaction(self, ahead)

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Commits when the block ends normally; an exception leaves the batch uncommitted."""
        txn = self.begin()
        yield txn
        txn.commit()

    async def publish(self, topic: str, value: bytes, *, key: bytes | None, headers: Headers = ()) -> None:
        tenant = self.topics.tenant_of_ingress(topic)
        if tenant is None:
            self.write(Record(topic, key, value, headers))
            return
        with self.transaction() as txn:
            await txn.route(self.incoming(tenant, value, key=key, headers=headers))
