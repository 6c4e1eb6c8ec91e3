"""The dashboard's numbers, read from Kafka itself, so they hold while the router is down.

- Senders' rates: end offsets of their ingress topics, sampled every tick (the
  records are never read: anyone may write them, and a hostile one could stall a reader).
- LPS rates: records on the delivery topics, counted by a group-less tail reader.
- Outcomes: receipts on the replies topics within the window (same reader).
- Lag and oldest waiting: committed offsets of `<prefix>-<lps>` against the end,
  and the record each lagging partition is held at (its clinic and its age).
- Dead letters: the dead-letter topic, read record by record (from its beginning
  while it is small, so the depth is exact), grouped by clinic for stage `deliver`.
- The last peak: the accounting module, asked now and then (it reads timestamps).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import re
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError as AIOKafkaError
from confluent_kafka import KafkaException as ConfluentException

from contracts import ParseError, PrikError, Receipt, Topics, contains_cpr, parse
from contracts import headers as h
from contracts.identifiers import SOR_PATTERN, TENANT_ID_RE
from contracts.tenants import Role, Tenants
from contracts.topics import tenant_of_source
from prik.kafka import admin_client, confluent_admin, kafka_errors, make_consumer
from prik.logs import get_logger
from prik.quarantine import read_one
from prik.settings import KafkaSettings

from .backlog import Backlogs, Waiting
from .model import (
    OUTCOMES,
    DashboardState,
    DeadLetterQueue,
    FailingClinic,
    Peak,
    Receiver,
    Router,
    Sender,
    WaitingClinic,
)
from .window import Buckets, History, OffsetRates

__all__ = [
    "DLQ_FULL_SCAN",
    "PEAK_HOURS",
    "WAITING_AFTER",
    "Collector",
    "PeakFinder",
    "safe_text",
    "sor_or_none",
]

_log = get_logger("prik.dashboard")

# The busiest minute since a time (the accounting module's `traffic`, in production).
PeakFinder = Callable[[datetime], Awaitable[Peak | None]]

# Up to this many offsets the dead-letter topic is read from its beginning (exact depth);
# beyond it only the window is read and the depth is end minus beginning.
DLQ_FULL_SCAN = 20_000
_SOR_RE = re.compile(SOR_PATTERN)
_SHOWN_CHARS = 160
# Bounds on what the dashboard keeps in memory whatever the traffic.
_MAX_FAILING = 5_000
_SHOWN_FAILING = 12
_SHOWN_WAITING = 12
# A delivery waits this long before its clinic is listed as holding its partition back:
# below it, it is a delivery in flight, and listing those would hide the ones that matter.
WAITING_AFTER = 10.0
_DISCOVER_EVERY = 30.0
# The accounting module reads every ingress record of its window: the whole day now and then,
# the last minutes every minute.
_PEAK_FULL_EVERY = 1800.0
_PEAK_RECENT_EVERY = 60.0
_PEAK_RECENT_SPAN = 180.0
# The last peak is the busiest minute of this many hours.
PEAK_HOURS = 24
_PROBE_WAIT = 1.5
# Up to this many offsets behind, an LPS group's backlog is counted record by record.
BACKLOG_COUNT_LIMIT = 2_000


def sor_or_none(key: bytes | None) -> str | None:
    """The key as a SOR code when it is exactly one, else None: no other key is ever shown."""
    if not key or len(key) > 18:
        return None
    text = key.decode("ascii", "replace")
    if _SOR_RE.fullmatch(text) is None or contains_cpr(text):
        return None
    return text


def safe_text(raw: bytes | None) -> str:
    """Header text as the page may show it: one printable line, short, never a CPR number."""
    text = " ".join((raw or b"").decode("utf-8", "replace").split())
    text = "".join(c if c.isprintable() else "?" for c in text)
    if contains_cpr(text):
        return "(withheld: looks like patient data)"
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


@dataclass(slots=True)
class _Failing:
    lps: str | None
    times: deque[int] = field(default_factory=deque)  # record timestamps, ms
    last_reason: str = ""
    last_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class _Lag:
    records: int
    exact: bool
    by_topic: dict[str, int]


class Collector:
    """Reads Kafka every tick and builds a `DashboardState`.

    `start()` connects; `refresh()` takes one sample and returns the state (it never
    raises for Kafka trouble: the state then carries `kafka_error` and the last numbers);
    `stop()` closes every client.
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: Topics,
        tenants: Tenants,
        *,
        tick: float = 2.0,
        window: int = 300,
        rate_window: int = 10,
        peak: PeakFinder | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._kafka = kafka
        self._topics = topics
        self._tenants = tenants
        self.tick = tick
        self._window = window
        self._rate_window = rate_window
        self._peak_finder = peak
        self._clock = clock
        self._senders = [t for t in tenants.tenant if t.role is Role.PRODUCER]
        self._lps = [t for t in tenants.tenant if t.role is Role.LPS]
        self._ingress_rates = OffsetRates(span=rate_window, keep=max(60.0, 4.0 * rate_window))
        self._records = Buckets(window=window)
        self._history = History(length=max(2, int(window / tick)))
        self._failing: dict[tuple[str | None, str], _Failing] = {}
        self._dlq_offsets: dict[int, list[int]] = {}
        self._dlq_scan_ends: dict[TopicPartition, int] | None = None
        # Per partition, the offset after the last record taken (see _skip_poison).
        self._taken: dict[TopicPartition, int] = {}
        self._dlq_exact = False
        self._backlogs = Backlogs(limit=BACKLOG_COUNT_LIMIT)
        self._partitions: dict[str, list[TopicPartition]] = {}
        self._discovered_at = float("-inf")
        self._peaks: list[Peak] = []
        self._peak_error: str | None = None
        self._peak_task: asyncio.Task[None] | None = None
        self._peak_full_at = float("-inf")
        self._peak_recent_at = float("-inf")
        self._stack = contextlib.AsyncExitStack()
        self._admin: AIOKafkaAdminClient | None = None
        self._groups_admin: Any = None  # confluent-kafka's AdminClient, made on first use
        self._probe: AIOKafkaConsumer | None = None
        self._tail: AIOKafkaConsumer | None = None
        self._tail_task: asyncio.Task[None] | None = None
        self._tail_wanted: set[TopicPartition] = set()
        self._tail_error: str | None = None
        self._last: DashboardState | None = None
        self._sample_error: str | None = None

    # -- life --------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            self._admin = await self._stack.enter_async_context(admin_client(self._kafka))
            self._probe = make_consumer(
                self._kafka,
                group_id=None,
                client_id="prik-dashboard",
                # The probe wants one record per lagging partition, not a megabyte of each.
                max_partition_fetch_bytes=128 * 1024,
            )
            self._tail = make_consumer(self._kafka, group_id=None, client_id="prik-dashboard")
            with kafka_errors(f"connecting to Kafka at {self._kafka.bootstrap}"):
                await self._probe.start()
                self._stack.push_async_callback(self._probe.stop)
                await self._tail.start()
                self._stack.push_async_callback(self._tail.stop)
            await self._discover()
        except BaseException:
            await self._stack.aclose()
            raise
        self._tail_task = asyncio.create_task(self._follow(), name="prik-dashboard-tail")

    async def stop(self) -> None:
        for task in (self._tail_task, self._peak_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self._stack.aclose()

    # -- topics ------------------------------------------------------------------------

    def _ingress_topics(self) -> dict[str, str]:
        return {t.id: self._topics.ingress(t.id) for t in self._tenants.tenant}

    def _deliver_topics(self) -> dict[str, str]:
        return {t.id: self._topics.deliver(t.id) for t in self._lps}

    def _replies_topics(self) -> dict[str, str]:
        return {t.id: self._topics.replies(t.id) for t in self._senders}

    def _of(self, topics: Iterable[str]) -> list[TopicPartition]:
        return [tp for topic in topics for tp in self._partitions.get(topic, ())]

    async def _discover(self) -> None:
        """Which of the tenants' topics exist, and their partitions; new ones join the tail."""
        admin = self._admin
        assert admin is not None  # noqa: S101  start() made it
        wanted = {
            *self._ingress_topics().values(),
            *self._deliver_topics().values(),
            *self._replies_topics().values(),
            self._topics.dlq,
        }
        with kafka_errors("listing topics"):
            # Only existing topics are described: asking for a missing one may create it.
            existing = sorted(wanted.intersection(await admin.list_topics()))
            described = await admin.describe_topics(existing) if existing else []
        partitions: dict[str, list[TopicPartition]] = {}
        for topic in described:
            if not topic["error_code"] and topic["partitions"]:
                name = topic["topic"]
                partitions[name] = sorted(TopicPartition(name, p["partition"]) for p in topic["partitions"])
        self._partitions = partitions
        self._discovered_at = time.monotonic()
        tail = set(self._of([*self._deliver_topics().values(), *self._replies_topics().values()]))
        tail |= set(partitions.get(self._topics.dlq, ()))
        self._tail_wanted = tail

    # -- the tail reader -----------------------------------------------------------------

    async def _follow(self) -> None:
        """Read delivery, replies and dead-letter records as they come; never stops for bad records."""
        consumer = self._tail
        assert consumer is not None  # noqa: S101  start() made it
        assigned: set[TopicPartition] = set()
        while True:
            try:
                if self._tail_wanted != assigned:
                    kept = assigned
                    assigned = await self._reassign(consumer, assigned)
                    # A partition assigned anew is sought afresh: what was taken there before is moot.
                    self._taken = {tp: o for tp, o in self._taken.items() if tp in kept and tp in assigned}
                if not assigned:
                    await asyncio.sleep(self.tick)
                    continue
                try:
                    batch = await consumer.getmany(timeout_ms=500)
                except UnicodeDecodeError:
                    await self._skip_poison(consumer, assigned)
                    continue
                for records in batch.values():
                    for record in records:
                        self._take(record)
                    if records:
                        last = records[-1]
                        self._taken[TopicPartition(last.topic, last.partition)] = last.offset + 1
                await self._check_dlq_scan(consumer)
                self._tail_error = None
            except asyncio.CancelledError:
                raise
            except (AIOKafkaError, PrikError, OSError) as exc:
                error = f"reading records: {type(exc).__name__}"
                if error != self._tail_error:  # once per kind of trouble, not every tick
                    _log.warning("dashboard tail failed", error=type(exc).__name__)
                self._tail_error = error
                await asyncio.sleep(self.tick)

    async def _reassign(
        self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]
    ) -> set[TopicPartition]:
        """Assign the wanted partitions, keeping the positions of those already read."""
        wanted = set(self._tail_wanted)
        kept = {tp: await consumer.position(tp) for tp in assigned & wanted}
        consumer.assign(sorted(wanted))
        for tp, position in kept.items():
            consumer.seek(tp, position)
        new = sorted(wanted - assigned)
        if not new:
            return wanted
        dlq = [tp for tp in new if tp.topic == self._topics.dlq]
        others = [tp for tp in new if tp.topic != self._topics.dlq]
        with kafka_errors("finding where to start reading"):
            begins = await consumer.beginning_offsets(new)
            ends = await consumer.end_offsets(new)
            since_ms = int((self._clock() - self._window) * 1000)
            found = await consumer.offsets_for_times(dict.fromkeys(new, since_ms))
        # A small dead-letter topic is read whole, so its depth counts letters, not offsets.
        dlq_span = sum(ends[tp] - begins[tp] for tp in dlq)
        if dlq and self._dlq_scan_ends is None and dlq_span <= DLQ_FULL_SCAN:
            for tp in dlq:
                consumer.seek(tp, begins[tp])
            self._dlq_scan_ends = {tp: ends[tp] for tp in dlq}
        else:
            others += dlq
        for tp in others:
            start = found.get(tp)
            consumer.seek(tp, start.offset if start is not None else ends[tp])
        return wanted

    async def _check_dlq_scan(self, consumer: AIOKafkaConsumer) -> None:
        """Once the first read of the dead-letter topic reaches where it ended at start, counts are exact."""
        if self._dlq_scan_ends is None or self._dlq_exact:
            return
        for tp, end in self._dlq_scan_ends.items():
            if await consumer.position(tp) < end:
                return
        self._dlq_exact = True

    async def _skip_poison(self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]) -> None:
        """A record aiokafka cannot decode (a header name that is not UTF-8): take it through librdkafka.

        Anyone allowed to write the dead-letter topic can write one. Each partition is
        fetched alone to find it; its next record is read with confluent-kafka, counted,
        and passed.
        """
        # The failed fetch still moved the positions past what it drained before failing
        # (aiokafka): go back to what was taken, or those records would never be counted.
        for tp in assigned:
            if tp in self._taken:
                consumer.seek(tp, self._taken[tp])
        for tp in sorted(assigned):
            position = await consumer.position(tp)
            others = [p for p in assigned if p != tp]
            consumer.pause(*others)
            try:
                batch = await consumer.getmany(tp, timeout_ms=200)
            except UnicodeDecodeError:
                record = await read_one(self._kafka, tp.topic, tp.partition, position, wait=5.0)
                if record is not None:
                    self._take(record)
                    self._taken[tp] = record.offset + 1
                    consumer.seek(tp, record.offset + 1)
                return
            finally:
                consumer.resume(*others)
            for records in batch.values():
                for good in records:
                    self._take(good)
                if records:
                    self._taken[tp] = records[-1].offset + 1

    def _take(self, record: Any) -> None:  # noqa: ANN401 - aiokafka's ConsumerRecord or a quarantine RawRecord
        topic: str = record.topic
        timestamp: int = record.timestamp if isinstance(getattr(record, "timestamp", None), int) else 0
        if not timestamp:
            timestamp = int(self._clock() * 1000)
        if topic == self._topics.dlq:
            self._take_letter(record, timestamp)
            return
        head = f"{self._topics.prefix}.deliver."
        if topic.startswith(head):
            self._records.add(timestamp, ("deliver", topic.removeprefix(head)))
            return
        head = f"{self._topics.prefix}.replies."
        if topic.startswith(head):
            self._take_reply(topic.removeprefix(head), record, timestamp)

    def _take_reply(self, sender: str, record: Any, timestamp: int) -> None:  # noqa: ANN401 - as above
        try:
            message = parse(record.value or b"", record.headers or ())
        except (ParseError, ValueError):
            return
        if not isinstance(message, Receipt):
            return  # a task status forwarded to its requester: not an outcome
        outcome = message.data.outcome.value
        self._records.add(timestamp, ("outcome", sender, outcome))
        by = tenant_of_source(message.source)
        if by is not None and by in {t.id for t in self._lps}:
            self._records.add(timestamp, ("lps-outcome", by, outcome))

    def _take_letter(self, record: Any, timestamp: int) -> None:  # noqa: ANN401 - as above
        offsets = self._dlq_offsets.setdefault(record.partition, [])
        if not offsets or record.offset > offsets[-1]:
            offsets.append(record.offset)
        headers: dict[str, bytes] = {}
        for name, value in getattr(record, "headers", None) or ():
            if isinstance(name, str) and isinstance(value, bytes | bytearray):
                headers[name] = bytes(value)
        stage = headers.get(h.ERROR_STAGE, b"").decode("utf-8", "replace")
        self._records.add(timestamp, ("dlq", "all"))
        if stage != h.ErrorStage.DELIVER.value:
            return
        self._records.add(timestamp, ("dlq", "deliver"))
        clinic = sor_or_none(record.key)
        if clinic is None:
            return
        original = headers.get(h.ORIGINAL_TOPIC, b"").decode("utf-8", "replace")
        head = f"{self._topics.prefix}.deliver."
        lps = original.removeprefix(head) if original.startswith(head) else None
        if lps is not None and TENANT_ID_RE.fullmatch(lps) is None:
            lps = None
        entry = self._failing.get((lps, clinic))
        if entry is None:
            if len(self._failing) >= _MAX_FAILING:
                oldest = min(self._failing, key=lambda k: self._failing[k].last_at_ms)
                del self._failing[oldest]
            entry = self._failing[(lps, clinic)] = _Failing(lps)
        entry.times.append(timestamp)
        if timestamp >= entry.last_at_ms:
            entry.last_at_ms = timestamp
            entry.last_reason = safe_text(headers.get(h.ERROR_REASON)) or "no reason given"

    # -- one tick ------------------------------------------------------------------------

    async def refresh(self) -> DashboardState:
        """One sample of everything; on Kafka trouble the last numbers with the error."""
        try:
            state = await asyncio.wait_for(self._sample(), timeout=max(10.0, 5 * self.tick))
        except (AIOKafkaError, PrikError, OSError, TimeoutError) as exc:
            text = str(exc) if isinstance(exc, PrikError) else f"Kafka did not answer ({type(exc).__name__})"
            if text != self._sample_error:  # once per kind of trouble, not every tick
                _log.warning("dashboard sample failed", error=text)
            self._sample_error = text
            base = self._last or self._empty()
            return base.model_copy(update={"kafka_error": text, "generated_at": datetime.now(UTC)})
        if self._sample_error is not None:
            _log.info("dashboard sampling again")
            self._sample_error = None
        self._last = state
        return state

    def _empty(self) -> DashboardState:
        return DashboardState(
            generated_at=datetime.now(UTC),
            prefix=self._topics.prefix,
            bootstrap=self._kafka.bootstrap,
            window_s=self._window,
            rate_window_s=self._rate_window,
            tick_s=self.tick,
        )

    async def _sample(self) -> DashboardState:
        if time.monotonic() - self._discovered_at > _DISCOVER_EVERY:
            await self._discover()
        self._maybe_ask_peak(self._clock())
        probe, admin = self._probe, self._admin
        assert probe is not None  # noqa: S101  start() made it
        assert admin is not None  # noqa: S101  start() made it
        now = self._clock()
        ingress = self._ingress_topics()
        measured = self._of([*ingress.values(), *self._deliver_topics().values(), self._topics.dlq])
        with kafka_errors("reading end offsets"):
            ends: dict[TopicPartition, int] = await probe.end_offsets(measured) if measured else {}
            begins: dict[TopicPartition, int] = await probe.beginning_offsets(measured) if measured else {}

        def summed(topic: str) -> int:
            return sum(ends[tp] for tp in self._partitions.get(topic, ()))

        self._ingress_rates.add(time.monotonic(), {t: summed(topic) for t, topic in ingress.items()})
        ingress_rates = self._ingress_rates.rates()
        self._records.prune(now)
        recent = self._records.total(now)

        groups = await self._groups()
        router_group = f"{self._topics.prefix}-router"
        router_backlog = await self._lag(admin, router_group, self._of(ingress.values()), ends, begins)
        senders: list[Sender] = []
        for tenant in self._senders:
            rate = ingress_rates.get(tenant.id)
            backlog = router_backlog.by_topic.get(ingress[tenant.id]) if router_backlog is not None else None
            senders.append(
                Sender(
                    id=tenant.id,
                    name=tenant.name,
                    per_s=rate,
                    backlog_records=backlog,
                    outcomes={o: recent[("outcome", tenant.id, o)] for o in OUTCOMES},
                )
            )
        receivers, waiting = await self._receivers(admin, groups, ends, begins, now)
        router_state, router_members = groups.get(router_group, (None, None))
        router = Router(
            group=router_group,
            instances=router_members,
            group_state=router_state,
            backlog_records=router_backlog.records if router_backlog is not None else None,
        )
        total_in = [s.per_s for s in senders if s.per_s is not None]
        total_out = [r.per_s for r in receivers if r.per_s is not None]
        ingress_per_s = sum(total_in) if total_in else None
        deliver_per_s = sum(total_out) if total_out else None
        self._history.add(
            {
                "in": ingress_per_s,
                "out": deliver_per_s,
                **{f"s:{s.id}": s.per_s for s in senders},
                **{f"r:{r.id}": r.per_s for r in receivers},
            },
            ["in", "out", *(f"s:{s.id}" for s in senders), *(f"r:{r.id}" for r in receivers)],
        )
        senders = [s.model_copy(update={"history_per_s": self._history.of(f"s:{s.id}")}) for s in senders]
        receivers = [r.model_copy(update={"history_per_s": self._history.of(f"r:{r.id}")}) for r in receivers]
        return DashboardState(
            generated_at=datetime.now(UTC),
            prefix=self._topics.prefix,
            bootstrap=self._kafka.bootstrap,
            window_s=self._window,
            rate_window_s=self._rate_window,
            tick_s=self.tick,
            kafka_error=self._tail_error,
            ingress_per_s=ingress_per_s,
            deliver_per_s=deliver_per_s,
            history_ingress_per_s=self._history.of("in"),
            history_deliver_per_s=self._history.of("out"),
            outcomes={o: sum(s.outcomes.get(o, 0) for s in senders) for o in OUTCOMES},
            senders=senders,
            receivers=receivers,
            router=router,
            dlq=self._dlq(ends, begins, recent),
            failing_clinics=self._failing_now(now),
            waiting_clinics=waiting[:_SHOWN_WAITING],
            waiting_after_s=WAITING_AFTER,
            peak=self._last_peak(now),
            peak_error=self._peak_error,
        )

    async def _receivers(
        self,
        admin: AIOKafkaAdminClient,
        groups: dict[str, tuple[str | None, int | None]],
        ends: dict[TopicPartition, int],
        begins: dict[TopicPartition, int],
        now: float,
    ) -> tuple[list[Receiver], list[WaitingClinic]]:
        """Each LPS: its delivery rate, its consumer group's lag and waiting clinics, its outcomes."""
        recent = self._records.total(now)
        deliver_rates = self._records.rates(now, self._rate_window)
        deliver = self._deliver_topics()
        receivers: list[Receiver] = []
        waiting: list[WaitingClinic] = []
        for tenant in self._lps:
            group = f"{self._topics.prefix}-{tenant.id}"
            partitions = self._partitions.get(deliver[tenant.id], [])
            lag = await self._lag(admin, group, partitions, ends, begins, count=True)
            oldest: float | None = None
            for tp in partitions:
                held = self._backlogs.oldest(tp)
                if held is None:
                    continue
                age = max(0.0, now - held.timestamp_ms / 1000)
                oldest = age if oldest is None else max(oldest, age)
                if age >= WAITING_AFTER:
                    waiting.append(
                        WaitingClinic(
                            clinic=held.clinic, lps=tenant.id, partition=tp.partition, waiting_s=age
                        )
                    )
            state, members = groups.get(group, (None, None))
            receivers.append(
                Receiver(
                    id=tenant.id,
                    name=tenant.name,
                    per_s=deliver_rates.get(("deliver", tenant.id), 0.0),
                    lag_records=lag.records if lag is not None else None,
                    lag_exact=lag.exact if lag is not None else False,
                    oldest_waiting_s=oldest,
                    consumers=members,
                    group_state=state,
                    outcomes={o: recent[("lps-outcome", tenant.id, o)] for o in OUTCOMES},
                )
            )
        waiting.sort(key=lambda w: -w.waiting_s)
        return receivers, waiting

    async def _groups(self) -> dict[str, tuple[str | None, int | None]]:
        """State and member count of the router's and every LPS's consumer group.

        Through librdkafka: aiokafka 0.14 cannot decode Kafka 4's DescribeGroups answer
        for a group with members, and drops the connection.
        """
        names = [f"{self._topics.prefix}-router", *(f"{self._topics.prefix}-{t.id}" for t in self._lps)]
        admin = self._groups_admin
        if admin is None:
            admin = self._groups_admin = confluent_admin(self._kafka, timeout=5.0)
        out: dict[str, tuple[str | None, int | None]] = {}
        futures = admin.describe_consumer_groups(names, request_timeout=5.0)
        for name, future in futures.items():
            try:
                described = await asyncio.wrap_future(future)
            except ConfluentException as exc:
                # No coordinator yet (a fresh broker), or Kafka went away: unknown this tick.
                # A new client next tick: librdkafka's admin did not recover from a broker restart.
                _log.debug("describing consumer groups failed", error=type(exc).__name__)
                self._groups_admin = None
                continue
            state = described.state.name.lower()
            # A group nobody ever joined is "dead" to Kafka; to an operator it has no consumers.
            out[name] = (state, len(described.members))
        return out

    async def _lag(
        self,
        admin: AIOKafkaAdminClient,
        group: str,
        partitions: list[TopicPartition],
        ends: dict[TopicPartition, int],
        begins: dict[TopicPartition, int],
        *,
        count: bool = False,
    ) -> _Lag | None:
        """How far `group` is behind the end of `partitions` (a partition it never committed counts whole).

        Without `count`, offsets (ingress topics: one offset per record, and never read here).
        With it, the records themselves while the gap is small (see `backlog.py`), and the
        first waiting record of each partition.
        """
        if not partitions:
            return _Lag(0, True, {})
        try:
            committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        except AIOKafkaError:
            return None
        positions: dict[TopicPartition, int] = {}
        for tp in partitions:
            meta = committed.get(tp)
            positions[tp] = meta.offset if meta is not None and meta.offset >= 0 else begins.get(tp, 0)
        by_topic: dict[str, int] = {}
        exact = True
        if count:
            todo = {}
            for tp in partitions:
                start = self._backlogs.plan(tp, positions[tp], ends.get(tp, 0))
                if start is not None:
                    todo[tp] = start
            await self._read_backlogs(todo, ends)
        for tp in partitions:
            end = ends.get(tp, 0)
            if count:
                behind, counted = self._backlogs.lag(tp, positions[tp], end)
                exact = exact and counted
            else:
                behind = max(0, end - positions[tp])
            by_topic[tp.topic] = by_topic.get(tp.topic, 0) + behind
        return _Lag(sum(by_topic.values()), exact, by_topic)

    async def _read_backlogs(self, todo: dict[TopicPartition, int], ends: dict[TopicPartition, int]) -> None:
        """Read the waiting records of each partition from where its backlog was read up to, briefly."""
        if not todo:
            return
        probe = self._probe
        assert probe is not None  # noqa: S101  start() made it
        with kafka_errors("reading the waiting records"):
            probe.assign(sorted(todo))
            for tp, start in todo.items():
                probe.seek(tp, start)
            deadline = time.monotonic() + _PROBE_WAIT
            left = set(todo)
            while left and time.monotonic() < deadline:
                batch = await probe.getmany(*left, timeout_ms=200)
                for tp, records in batch.items():
                    for record in records:
                        clinic = sor_or_none(record.key)
                        self._backlogs.took(tp, Waiting(record.offset, record.timestamp, clinic))
                for tp in list(left):
                    self._backlogs.reached(tp, await probe.position(tp))
                    if not self._backlogs.wants(tp, ends.get(tp, 0)):
                        left.discard(tp)
            probe.assign([])

    def _dlq(
        self, ends: dict[TopicPartition, int], begins: dict[TopicPartition, int], recent: Counter[Any]
    ) -> DeadLetterQueue:
        partitions = self._partitions.get(self._topics.dlq, [])
        if self._dlq_exact:
            depth: int | None = 0
            for tp in partitions:
                offsets = self._dlq_offsets.get(tp.partition, [])
                # Letters past retention are gone from the topic: count from its beginning.
                depth = (depth or 0) + len(offsets) - bisect.bisect_left(offsets, begins.get(tp, 0))
        else:
            depth = sum(ends.get(tp, 0) - begins.get(tp, 0) for tp in partitions) if partitions else None
        return DeadLetterQueue(
            topic=self._topics.dlq,
            depth_records=depth,
            exact=self._dlq_exact,
            recent_records=recent[("dlq", "all")],
            recent_deliver_records=recent[("dlq", "deliver")],
        )

    def _failing_now(self, now: float) -> list[FailingClinic]:
        since_ms = int((now - self._window) * 1000)
        shown: list[FailingClinic] = []
        for (lps, clinic), entry in list(self._failing.items()):
            while entry.times and entry.times[0] < since_ms:
                entry.times.popleft()
            if not entry.times:
                del self._failing[(lps, clinic)]
                continue
            shown.append(
                FailingClinic(
                    clinic=clinic,
                    lps=lps,
                    dead_letters=len(entry.times),
                    last_reason=entry.last_reason,
                    last_at=datetime.fromtimestamp(entry.last_at_ms / 1000, UTC),
                )
            )
        shown.sort(key=lambda f: (-f.dead_letters, f.clinic))
        return shown[:_SHOWN_FAILING]

    # -- the peak ------------------------------------------------------------------------

    def _last_peak(self, now: float) -> Peak | None:
        """The busiest minute of the last `PEAK_HOURS` the accounting module has found."""
        since = datetime.fromtimestamp(now - PEAK_HOURS * 3600, UTC)
        self._peaks = [p for p in self._peaks if p.at >= since]
        if not self._peaks:
            return None
        best = max(self._peaks, key=lambda p: (p.per_minute, p.at))
        return best.model_copy(update={"since": since})

    def _maybe_ask_peak(self, now: float) -> None:
        """Ask the accounting module in the background: the whole 24 hours now and then (it reads
        every ingress record of them), the last few minutes every minute (so a new peak shows soon)."""
        if self._peak_finder is None or (self._peak_task is not None and not self._peak_task.done()):
            return
        if now - self._peak_full_at >= _PEAK_FULL_EVERY:
            self._peak_full_at = self._peak_recent_at = now
            since, full = now - PEAK_HOURS * 3600, True
        elif now - self._peak_recent_at >= _PEAK_RECENT_EVERY:
            self._peak_recent_at = now
            since, full = now - _PEAK_RECENT_SPAN, False
        else:
            return
        ask = self._ask_peak(self._peak_finder, datetime.fromtimestamp(since, UTC), full=full)
        self._peak_task = asyncio.create_task(ask, name="prik-dashboard-peak")

    async def _ask_peak(self, finder: PeakFinder, since: datetime, *, full: bool) -> None:
        try:
            found = await finder(since)
        except (AIOKafkaError, PrikError, OSError, TimeoutError) as exc:
            self._peak_error = str(exc) if isinstance(exc, PrikError) else type(exc).__name__
            _log.warning("dashboard peak failed", error=self._peak_error)
            return
        self._peak_error = None
        if full:
            # A whole read knows the 24 hours' best: keep only what is newer than it read.
            self._peaks = [p for p in self._peaks if p.at > (found.at if found else since)]
        if found is not None:
            self._peaks.append(found)
