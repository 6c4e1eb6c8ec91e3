"""The routing decision for one ingress record, free of any Kafka client.

Rules run in the order of the contract: limits, parse and validate, authenticate,
authorise, drop duplicates, expire, then route by type. A refusal is a dead
letter plus a `rejected` receipt to the sender. State changes (the dedup
window, task records) are staged on the `Batch` and applied only once the
transport has committed the batch, so an aborted transaction leaves no trace.

No record can stop the router: whatever handling one record raises, other than
a Kafka failure the transport retries, makes that record a dead letter with
stage `internal`. What the router forwards is always the canonical encoding of
what it validated, never the sender's own bytes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Literal, TypeVar

from contracts import (
    INITIAL_STATUS,
    MAX_MESSAGE_BYTES,
    STRUCTURED_CONTENT_TYPE,
    ErrorStage,
    KafkaError,
    Message,
    MessageType,
    Outcome,
    ParseError,
    Receipt,
    TaskRequest,
    TaskStatusUpdate,
    Tenants,
    Topics,
    TransitionError,
    check_record,
    check_transition,
    codec,
    contains_cpr,
    is_expired,
    parse,
    source_of,
    tenant_of_source,
    to_bytes,
    who_may_set,
)
from contracts import headers as h
from contracts.limits import MAX_KEY_BYTES
from contracts.tenants import Role

from .dedup import DedupWindow
from .outputs import dead_letter, receipt
from .records import Incoming, Outgoing
from .tables import DirectoryTable, Table, TaskRecord, TaskTable
from .tenancy import admission_refusal
from .tokens import DEVELOPMENT_TOKENS, RouteTokens

__all__ = ["NOTHING_STAGED", "Batch", "Routed", "Router", "Staged", "Verdict"]

_Row = TypeVar("_Row")
Verdict = Literal["routed", "rejected", "expired", "duplicate", "forwarded"]
_STRUCTURED = ((h.CONTENT_TYPE, STRUCTURED_CONTENT_TYPE.encode()),)
# Topic names remembered at most per kind (tenants and ingress topics are far fewer).
_MAX_NAMES = 10_000


@dataclass(slots=True)
class Routed:
    verdict: Verdict
    message_type: str
    outputs: list[Outgoing] = field(default_factory=list)
    stage: str | None = None
    # Of a record that parsed: what log lines about it name (its trace id comes from `traceparent`).
    message_id: str | None = None
    traceparent: str | None = None


def _every_topic(_topic: str) -> bool:
    return True


_DedupKey = tuple[str, int, str, str]


@dataclass(frozen=True, slots=True)
class Staged:
    """What batches still committing decided: the next batch decides as if they had committed.

    Only what those batches staged themselves, so nothing accumulates from batch to
    batch: what committed before them is in the router's tables already.
    """

    seen: frozenset[_DedupKey] = frozenset()
    tasks: Mapping[str, TaskRecord] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def of(cls, batches: Iterable[Batch]) -> Staged:
        seen: set[_DedupKey] = set()
        tasks: dict[str, TaskRecord] = {}
        for batch in batches:
            seen.update(batch.seen)
            tasks.update(batch.tasks)
        return cls(frozenset(seen), MappingProxyType(tasks))


NOTHING_STAGED = Staged()


@dataclass(slots=True)
class Batch:
    """State a batch has decided but the transport has not yet committed.

    `topic_exists` is the transport's view of the cluster when the batch began:
    an output to a topic that is missing would stall every batch behind it, so
    the record is refused instead. `ahead` is what batches still committing
    staged (the engine decides the next batch while the previous one commits).
    """

    topic_exists: Callable[[str], bool] = _every_topic
    ahead: Staged = NOTHING_STAGED
    seen: set[_DedupKey] = field(default_factory=set)
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    # What to undo, newest last: a dedup key to forget, or a function (no closure per seen record).
    _undo: list[tuple[str, int, str, str] | Callable[[], None]] = field(default_factory=list)

    def see(self, key: tuple[str, int, str, str]) -> None:
        seen = self.seen
        if key not in seen:
            seen.add(key)
            self._undo.append(key)

    def stage_task(self, key: str, record: TaskRecord) -> None:
        previous = self.tasks.get(key)
        self.tasks[key] = record

        def undo() -> None:
            if previous is None:
                self.tasks.pop(key, None)
            else:
                self.tasks[key] = previous

        self._undo.append(undo)

    def was_seen(self, key: _DedupKey) -> bool:
        """Whether this batch, or one still committing ahead of it, already took this message."""
        return key in self.seen or key in self.ahead.seen

    def task(self, key: str) -> TaskRecord | None:
        """The task's state as this batch, or one still committing ahead of it, left it."""
        record = self.tasks.get(key)
        return record if record is not None else self.ahead.tasks.get(key)

    def checkpoint(self) -> int:
        return len(self._undo)

    def rollback(self, checkpoint: int) -> None:
        """Forget what a record staged: a refused record leaves no dedup entry and no task."""
        undo = self._undo
        while len(undo) > checkpoint:
            entry = undo.pop()
            if isinstance(entry, tuple):
                self.seen.discard(entry)
            else:
                entry()


@dataclass(slots=True)
class _Context:
    """One admitted record on its way through the rules (private: not frozen, whose init costs more)."""

    rec: Incoming
    message: Message
    tenant_id: str
    tenants: Tenants
    batch: Batch
    now: datetime

    @property
    def replayed(self) -> bool:
        """Put back by `prik dlq replay`: sent again on purpose, so past the dedup window."""
        for name, _ in self.rec.headers:  # noqa: SIM110 - any() would build a generator per record
            if name == h.REPLAY:
                return True
        return False


class _Refused(Exception):  # noqa: N818 - control flow inside the router, never escapes it
    def __init__(self, stage: ErrorStage, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason = reason


CatchUp = Callable[[], Awaitable[None]]


async def _nothing_to_catch_up() -> None:
    return None


class Router:
    """Decides what one ingress record becomes; the transport moves the bytes.

    `catch_up_directory` and `catch_up_tasks` read their compacted topic to its
    current end (the transport's readers); the router calls them when a key is
    unknown, since a clinic or task may have been written a moment ago.
    """

    def __init__(
        self,
        topics: Topics,
        tenants: Callable[[], Tenants],
        directory: DirectoryTable,
        tasks: TaskTable,
        dedup: DedupWindow,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        catch_up_directory: CatchUp = _nothing_to_catch_up,
        catch_up_tasks: CatchUp = _nothing_to_catch_up,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        tokens: RouteTokens = DEVELOPMENT_TOKENS,
    ) -> None:
        self.topics = topics
        self._tenants = tenants
        self.directory = directory
        self.tasks = tasks
        self.dedup = dedup
        self._clock = clock
        self.catch_up_directory = catch_up_directory
        self.catch_up_tasks = catch_up_tasks
        self._max_bytes = max_message_bytes
        self.tokens = tokens
        # Topic names by ingress topic and tenant id, worked out once (the names check the id each
        # time: Topics.tenant_of_ingress alone was ~4% of routing in py-spy). Bounded by _MAX_NAMES.
        self._ingress_tenants: dict[str, str | None] = {}
        self._deliver_topics: dict[str, str] = {}
        self._replies_topics: dict[str, str] = {}

    # -- the batch protocol -------------------------------------------------------

    def commit(self, batch: Batch) -> None:
        """Apply what a committed batch decided."""
        for topic, partition, source, message_id in batch.seen:
            self.dedup.add(topic, partition, source, message_id)
        for key, record in batch.tasks.items():
            self.tasks.put(key, record)

    # -- topic names ------------------------------------------------------------------

    def _tenant_of_ingress(self, topic: str) -> str | None:
        names = self._ingress_tenants
        if topic in names:
            return names[topic]
        if len(names) >= _MAX_NAMES:
            names.clear()
        tenant = names[topic] = self.topics.tenant_of_ingress(topic)
        return tenant

    def _deliver_topic(self, lps: str) -> str:
        topic = self._deliver_topics.get(lps)
        if topic is None:
            if len(self._deliver_topics) >= _MAX_NAMES:
                self._deliver_topics.clear()
            # Raises for an id that names no topic, and then nothing is remembered.
            topic = self._deliver_topics[lps] = self.topics.deliver(lps)
        return topic

    def _replies_topic(self, tenant: str) -> str:
        topic = self._replies_topics.get(tenant)
        if topic is None:
            if len(self._replies_topics) >= _MAX_NAMES:
                self._replies_topics.clear()
            topic = self._replies_topics[tenant] = self.topics.replies(tenant)
        return topic

    # -- one record -----------------------------------------------------------------

    async def route(self, rec: Incoming, batch: Batch) -> Routed:
        """The verdict and outputs for one record. Raises only `KafkaError` (the transport retries)."""
        now = self._clock()
        tenant_id: str | None = None
        checkpoint = batch.checkpoint()
        try:
            tenant_id = self._tenant_of_ingress(rec.topic)
            tenants = self._tenants()
            tenant = tenants.get(tenant_id) if tenant_id else None
            tenant_id = tenant.id if tenant else None
            routed = await self._route(rec, batch, tenants, tenant_id, now)
            routed = self._guarded(rec, batch, routed, tenant_id, now)
        except KafkaError:
            batch.rollback(checkpoint)
            raise
        except Exception as exc:  # noqa: BLE001  a bug or an odd record must not stop routing for everyone
            routed = self._internal(rec, batch, tenant_id, exc, now)
        if routed.verdict == "rejected":
            batch.rollback(checkpoint)
        return routed

    async def _route(
        self, rec: Incoming, batch: Batch, tenants: Tenants, tenant_id: str | None, now: datetime
    ) -> Routed:
        if rec.unreadable is not None:
            return self._refuse(rec, batch, None, tenant_id, _Refused(ErrorStage.PARSE, rec.unreadable), now)
        try:
            if rec.key is not None and len(rec.key) > MAX_KEY_BYTES:
                # Only then: `parse` checks the value and headers first thing, in this very order.
                check_record(rec.key, rec.value, rec.headers, max_bytes=self._max_bytes)
            message = parse(rec.value, rec.headers, max_bytes=self._max_bytes)
        except ParseError as exc:
            stage = ErrorStage.PARSE if exc.stage == "parse" else ErrorStage.VALIDATE
            return self._refuse(rec, batch, None, tenant_id, _Refused(stage, exc.reason), now)
        if tenant_id is None:
            # No replies topic exists for an unknown tenant: dead letter only.
            refusal = _Refused(
                ErrorStage.AUTHENTICATE, f"ingress topic {rec.topic} belongs to no known tenant"
            )
            return self._refuse(rec, batch, message, None, refusal, now)
        ctx = _Context(rec, message, tenant_id, tenants, batch, now)
        try:
            routed = await self._admit_and_route(ctx)
        except _Refused as refusal:
            routed = self._refuse(rec, batch, message, tenant_id, refusal, now)
        routed.message_id, routed.traceparent = message.id, message.traceparent
        return routed

    def _guarded(
        self, rec: Incoming, batch: Batch, routed: Routed, tenant_id: str | None, now: datetime
    ) -> Routed:
        """Refuse a decision whose outputs name a topic that does not exist, rather than drop them."""
        topic_exists = batch.topic_exists
        for output in routed.outputs:
            if not topic_exists(output.topic):
                missing = output.topic
                break
        else:
            return routed
        if missing == self.topics.dlq:
            # Nowhere to put even a dead letter: the transport must not commit past this record.
            msg = f"topic {missing} does not exist (run `prik topics apply`)"
            raise KafkaError(msg, retriable=True)
        message = None if routed.verdict == "rejected" else _quiet_parse(rec, self._max_bytes)
        refusal = _Refused(ErrorStage.ROUTE, f"topic {missing} does not exist")
        return self._guarded(
            rec, batch, self._refuse(rec, batch, message, tenant_id, refusal, now), None, now
        )

    def _internal(
        self, rec: Incoming, batch: Batch, tenant_id: str | None, exc: Exception, now: datetime
    ) -> Routed:
        # The exception's type only: its message may quote the record (and a CPR with it).
        refusal = _Refused(ErrorStage.INTERNAL, f"the router failed on this record ({type(exc).__name__})")
        try:
            return self._refuse(rec, batch, None, tenant_id, refusal, now)
        except Exception:  # noqa: BLE001  even the receipt failed: the dead letter alone still tells
            letter = dead_letter(self.topics, rec, refusal.stage, refusal.reason)
            return Routed("rejected", "unknown", [letter], stage=str(refusal.stage))

    async def _admit_and_route(self, ctx: _Context) -> Routed:
        message = ctx.message
        refusal = admission_refusal(message, ctx.tenant_id, ctx.tenants)
        if refusal is not None:
            raise _Refused(*refusal)
        dedup_key = (ctx.rec.topic, ctx.rec.partition, message.source, message.id)
        if not ctx.replayed and (ctx.batch.was_seen(dedup_key) or self.dedup.seen(*dedup_key)):
            return Routed("duplicate", message.type)
        ctx.batch.see(dedup_key)
        if not isinstance(message, Receipt) and is_expired(message, ctx.now):
            return Routed("expired", message.type, [self._receipt(message, Outcome.EXPIRED, ctx.now)])
        if isinstance(message, Receipt):
            return await self._forward_receipt(ctx, message)
        if isinstance(message, TaskStatusUpdate):
            return await self._task_status(ctx, message)
        return await self._deliver(ctx)

    async def _deliver(self, ctx: _Context) -> Routed:
        """Advisories and task requests: to the clinic's LPS, keyed by clinic SOR."""
        message = ctx.message
        lps = await self._lps_of(message.recipient, ctx)
        outputs = [self._delivery(lps, (message.recipient or "").encode(), message)]
        if isinstance(message, TaskRequest):
            key = str(message.data.task_id)
            # A new task id is the normal case: reading the tasks topic to its end
            # for each request would cost a fetch round trip per message.
            existing = ctx.batch.task(key) or self.tasks.get(key)
            if existing is not None and ctx.replayed and existing.request_id == message.id:
                # An operator replays a request that reached the router but not the clinic.
                return Routed("routed", message.type, outputs)
            if existing is not None:
                raise _Refused(ErrorStage.TASK, f"task {key} already exists")
            record = TaskRecord(
                task_id=message.data.task_id,
                requester=ctx.tenant_id,
                lps=lps,
                recipient=message.recipient or "",
                status=INITIAL_STATUS,
                request_id=message.id,
                updated_at=ctx.now,
            )
            ctx.batch.stage_task(key, record)
            outputs.append(Outgoing(self.topics.tasks, key.encode(), record.to_bytes()))
        return Routed("routed", message.type, outputs)

    async def _lps_of(self, recipient: str | None, ctx: _Context) -> str:
        # A known clinic is the normal case: looked up here, without a coroutine for `_fresh`.
        entry = self.directory.get(recipient) if recipient else None
        if entry is None:
            entry = await self._fresh(self.directory, recipient, self.catch_up_directory)
        if entry is None:
            raise _Refused(ErrorStage.ROUTE, "recipient clinic is not in the directory")
        lps = ctx.tenants.get(entry.lps)
        if lps is None or lps.role is not Role.LPS:
            raise _Refused(ErrorStage.ROUTE, f"the clinic's LPS {entry.lps} is not a known lps tenant")
        deliver = self._deliver_topic(entry.lps)
        if not ctx.batch.topic_exists(deliver):
            raise _Refused(ErrorStage.ROUTE, f"topic {deliver} does not exist")
        return entry.lps

    @staticmethod
    async def _fresh(table: Table[_Row], key: str | None, catch_up: CatchUp) -> _Row | None:
        """The row, reading the table's topic to its end first when the key is unknown.

        A task status can reach this instance before the record its request
        wrote; a clinic can be loaded a moment before its first message.
        """
        if not key:
            return None
        row = table.get(key)
        if row is None:
            await catch_up()
            row = table.get(key)
        return row

    async def _task_status(self, ctx: _Context, message: TaskStatusUpdate) -> Routed:
        """Check the move against the task's state and its parties, then forward it."""
        key = str(message.data.task_id)
        task = ctx.batch.task(key)
        if task is None:
            task = await self._fresh(self.tasks, key, self.catch_up_tasks)
        if task is None:
            raise _Refused(ErrorStage.TASK, f"unknown task {key}")
        if ctx.tenant_id == task.lps:
            party = "lps"
        elif ctx.tenant_id == task.requester:
            party = "requester"
        else:
            raise _Refused(ErrorStage.AUTHORISE, f"tenant {ctx.tenant_id} is not a party to task {key}")
        if who_may_set(message.data.status) != party:
            raise _Refused(ErrorStage.AUTHORISE, f"the {party} may not set status {message.data.status}")
        try:
            check_transition(task.status, message.data.status)
        except TransitionError as exc:
            raise _Refused(ErrorStage.TASK, str(exc)) from None
        moved = task.moved(message.data.status, ctx.now)
        outputs = [Outgoing(self.topics.tasks, key.encode(), moved.to_bytes())]
        if party == "lps":
            replies = self._replies_topic(task.requester)
            if ctx.tenants.get(task.requester) is None or not ctx.batch.topic_exists(replies):
                raise _Refused(ErrorStage.ROUTE, f"the requester {task.requester} has no replies topic")
            outputs.append(Outgoing(replies, key.encode(), *_canonical(message)))
            # The router hands the status to its final place itself, so it confirms it.
            outputs.append(self._receipt(message, Outcome.DELIVERED, ctx.now))
        else:
            # The LPS's consumer orders by clinic, so the forwarded status names it.
            addressed = message.model_copy(update={"recipient": task.recipient})
            deliver = self._deliver_topic(task.lps)
            if not ctx.batch.topic_exists(deliver):
                raise _Refused(ErrorStage.ROUTE, f"topic {deliver} does not exist")
            outputs.append(self._delivery(task.lps, task.recipient.encode(), addressed))
        ctx.batch.stage_task(key, moved)
        return Routed("forwarded", message.type, outputs)

    async def _forward_receipt(self, ctx: _Context, message: Receipt) -> Routed:
        """An LPS's receipt goes to the original sender, if the router delivered that message to that LPS."""
        data = message.data
        token = next((v for k, v in ctx.rec.headers if k == h.ROUTE), None)
        if not self.tokens.valid(token, data.message_id, data.message_source, ctx.tenant_id):
            reason = f"lps {ctx.tenant_id} sent a receipt without a valid {h.ROUTE} for that message"
            raise _Refused(ErrorStage.AUTHORISE, reason)
        sender = tenant_of_source(data.message_source)
        replies = self._replies_topic(sender) if sender else ""
        if sender is None or ctx.tenants.get(sender) is None or not ctx.batch.topic_exists(replies):
            raise _Refused(ErrorStage.RECEIPT, "the receipt's message_source is not a known tenant")
        out = Outgoing(replies, data.message_id.encode(), *_canonical(message))
        return Routed("forwarded", message.type, [out])

    # -- helpers ----------------------------------------------------------------------

    def _delivery(self, lps: str, key: bytes, message: Message) -> Outgoing:
        value, headers = _canonical(message)
        token = self.tokens.make(message.id, message.source, lps)
        return Outgoing(self._deliver_topic(lps), key, value, (*headers, (h.ROUTE, token)))

    def _receipt(self, message: Message, outcome: Outcome, now: datetime) -> Outgoing:
        # Only reached for an authenticated source, whose tenant has a replies topic.
        sender = tenant_of_source(message.source) or ""
        return receipt(
            self._replies_topic(sender),
            message_id=message.id,
            message_source=message.source,
            message_type=message.type,
            recipient=message.recipient,
            outcome=outcome,
            reason=None,
            now=now,
        )

    def _refuse(  # noqa: PLR0917  one call shape for every refusal path
        self,
        rec: Incoming,
        batch: Batch,
        message: Message | None,
        tenant_id: str | None,
        refusal: _Refused,
        now: datetime,
    ) -> Routed:
        """A dead letter, and a `rejected` receipt to the sender where it has a replies topic."""
        outputs = [dead_letter(self.topics, rec, refusal.stage, refusal.reason)]
        message_type = message.type if message else _peek(rec, "type") or "unknown"
        # A receipt about a receipt would loop between router and LPS.
        replies = self._replies_topic(tenant_id) if tenant_id else None
        if replies and batch.topic_exists(replies) and message_type != MessageType.RECEIPT:
            message_id = (
                message.id if message else _peek(rec, "id") or f"{rec.topic}:{rec.partition}:{rec.offset}"
            )
            outputs.append(
                receipt(
                    replies,
                    message_id=message_id,
                    message_source=source_of(tenant_id or ""),
                    message_type=message_type,
                    recipient=message.recipient if message else None,
                    outcome=Outcome.REJECTED,
                    reason=refusal.reason,
                    now=now,
                )
            )
        return Routed("rejected", message_type, outputs, stage=str(refusal.stage))


def _canonical(message: Message) -> tuple[bytes, tuple[tuple[str, bytes], ...]]:
    """What the router forwards: the structured encoding of what it validated, never the sender's bytes."""
    return to_bytes(message), _STRUCTURED


def _quiet_parse(rec: Incoming, max_bytes: int) -> Message | None:
    try:
        return parse(rec.value, rec.headers, max_bytes=max_bytes)
    except ParseError:
        return None


def _peek(rec: Incoming, attribute: str) -> str | None:
    """Best effort: an attribute of a message that failed to parse, for its receipt."""
    for k, v in rec.headers:
        if k == f"ce_{attribute}":
            return _printable(v.decode("utf-8", "replace"))
    try:
        raw = codec.loads(rec.value or b"")
    except ParseError:
        return None
    value = raw.get(attribute) if isinstance(raw, dict) else None
    return _printable(value) if isinstance(value, str) else None


def _printable(value: str) -> str | None:
    # Receipts validate ids as printable ASCII; anything else is left out.
    if not value or len(value) > 200 or contains_cpr(value):
        return None
    return value if all("!" <= c <= "~" for c in value) else None
