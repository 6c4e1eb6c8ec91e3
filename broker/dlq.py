"""Dead letters for operators: list them, and put chosen ones back where their original was.

A dead letter is only a pointer. Anyone allowed to write `prik.dlq` (the router, and
every LPS's consumer) can write any bytes and headers there, so a replay never
publishes what a letter carries: it reads the original record back from the position
the letter names (`prik-original-topic` / `-partition` / `-offset`), checks that the
letter is a copy of it, and republishes the original's own key, value and headers to
the topic it came from — an ingress topic for the router's dead letters, a delivery
topic for a consumer's. A letter that names anything else is skipped with its reason.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError as AIOKafkaError

from contracts import KafkaError, ParseError, Topics, codec, contains_cpr, is_cpr
from contracts import headers as h
from contracts.identifiers import TENANT_ID_RE
from prik.kafka import admin_client, kafka_errors, make_consumer, make_producer, translate
from prik.settings import KafkaSettings
from producers.reading import read_records

__all__ = [
    "DEFAULT_READ_WAIT",
    "REPLAY_HEADER",
    "DeadLetter",
    "Origin",
    "ReplayReport",
    "Skip",
    "Skipped",
    "list_dead_letters",
    "replay_dead_letters",
]

# The operator sends it again on purpose, usually soon after the first attempt.
REPLAY_HEADER = h.REPLAY
_POSITION_HEADERS = (h.ORIGINAL_TOPIC, h.ORIGINAL_PARTITION, h.ORIGINAL_OFFSET)
# ASCII digits only: str.isdigit() also accepts "²", which int() then refuses.
_NUMBER_RE = re.compile(r"[0-9]{1,19}")
_MAX_OFFSET = 2**63 - 1  # Kafka offsets and partitions are signed 64/32-bit
_MAX_PARTITION = 2**31 - 1
_SHOWN_CHARS = 200
# How long one original may take to read before the replay stops (Kafka trouble, not a lost record).
DEFAULT_READ_WAIT = 15.0


class Skip:
    """Why a letter was not replayed: one short, fixed text per kind, so they can be counted."""

    NO_POSITION = "no original position in its headers"
    BAD_POSITION = "original position is not a topic, partition and offset"
    NOT_OURS = "original topic is not an ingress or delivery topic of this prefix"
    NO_TOPIC = "original topic does not exist"
    NO_PARTITION = "original partition does not exist"
    GONE = "original record is gone (retention or compaction)"
    NOTHING_THERE = "no committed record at the original offset"
    BEYOND_END = "original offset is beyond the end of its topic"
    MISMATCH = "letter does not match the record at its original position"
    SAME_ORIGINAL = "same original as an earlier letter of this replay"


# Kinds that are not a failure of the replay: the original was sent once, as asked.
_HARMLESS = frozenset({Skip.SAME_ORIGINAL})


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a dead letter says its original record was, parsed strictly."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of the dead-letter topic.

    Everything but `key` and `value` is safe to print (never patient data): `stage`,
    `reason` and `where` are the letter's own headers made so, since a letter may
    have been written by anyone allowed to write the topic. `key` and `value` are the
    letter's bytes, kept only to check the letter against its original. `origin` is
    None when the headers do not name a position a replay may read; `problem` then
    says why.
    """

    partition: int
    offset: int
    stage: str
    reason: str
    where: str
    origin: Origin | None
    problem: str | None
    message_id: str | None
    message_type: str | None
    source: str | None
    key: bytes | None
    value: bytes | None

    def __str__(self) -> str:
        return f"letter {self.partition}@{self.offset} (id {self.message_id or '-'})"


@dataclass(frozen=True, slots=True)
class Skipped:
    letter: DeadLetter
    why: str
    detail: str = ""

    def line(self) -> str:
        """One line for the operator: which letter, why, and where it pointed."""
        detail = f": {self.detail}" if self.detail else ""
        return f"skipped {self.letter}: {self.why}{detail} ({self.letter.where})"


@dataclass(slots=True)
class ReplayReport:
    replayed: list[DeadLetter] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """True when a chosen letter could not be replayed (a duplicate original is not a failure)."""
        return any(s.why not in _HARMLESS for s in self.skipped)

    def summary(self) -> str:
        """`replayed N, skipped M (count reason, ...)`."""
        counted = Counter(s.why for s in self.skipped)
        reasons = ", ".join(f"{n} {why}" for why, n in counted.most_common())
        tail = f" ({reasons})" if reasons else ""
        return f"replayed {len(self.replayed)}, skipped {len(self.skipped)}{tail}"


def _shown(text: str) -> str:
    """A header's text as it may be printed: one line, printable, short, never a CPR."""
    text = " ".join(text.split())
    text = "".join(c if c.isprintable() else "?" for c in text)
    if contains_cpr(text):
        return "(withheld: looks like patient data)"
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _attribute(value: bytes | None, headers: dict[str, bytes], name: str) -> str | None:
    """A CloudEvents attribute, best effort, and only if it cannot carry a CPR."""
    raw_header = headers.get(f"{h.CE_PREFIX}{name}")
    found: object = raw_header.decode("utf-8", "replace") if raw_header else None
    if found is None:
        try:
            raw = codec.loads(value or b"")
        except ParseError:
            return None
        found = raw.get(name) if isinstance(raw, dict) else None
    if not isinstance(found, str) or len(found) > _SHOWN_CHARS:
        return None
    # An id is refused only when it is a CPR, as a message id is (contracts.messages): about
    # one random UUID in a few hundred holds a CPR-shaped run ("d8161064-8592-..."), and its
    # letter must still be found by that id.
    if is_cpr(found) if name == "id" else contains_cpr(found):
        return None
    return found if found.isprintable() else None


def _header_map(headers: Iterable[tuple[str, bytes | None]]) -> tuple[dict[str, bytes], set[str]]:
    """Headers by name (a null value reads as empty) and the names that occur more than once."""
    found: dict[str, bytes] = {}
    repeated: set[str] = set()
    for name, value in headers:
        if name in found:
            repeated.add(name)
        found[name] = bytes(value) if value is not None else b""
    return found, repeated


def _number(raw: bytes, limit: int) -> int | None:
    text = raw.decode("ascii", "replace")
    if _NUMBER_RE.fullmatch(text) is None:
        return None
    number = int(text)
    return number if number <= limit else None


def _is_replay_topic(topics: Topics, topic: str) -> bool:
    """Whether a replay may publish to `topic`: an ingress or delivery topic of this prefix."""
    if topics.tenant_of_ingress(topic) is not None:
        return True
    head = f"{topics.prefix}.deliver."
    return topic.startswith(head) and TENANT_ID_RE.fullmatch(topic.removeprefix(head)) is not None


def _origin(topics: Topics, headers: dict[str, bytes], repeated: set[str]) -> Origin | str:
    """The letter's original position, or why it names none a replay may read."""
    if not all(name in headers for name in _POSITION_HEADERS):
        return Skip.NO_POSITION
    if repeated.intersection(_POSITION_HEADERS):
        # Genuine letters replace these headers; two of one name is a hand-made letter.
        return Skip.BAD_POSITION
    try:
        topic = headers[h.ORIGINAL_TOPIC].decode("ascii")
    except UnicodeDecodeError:
        return Skip.NOT_OURS
    if not _is_replay_topic(topics, topic):
        return Skip.NOT_OURS
    partition = _number(headers[h.ORIGINAL_PARTITION], _MAX_PARTITION)
    offset = _number(headers[h.ORIGINAL_OFFSET], _MAX_OFFSET)
    if partition is None or offset is None:
        return Skip.BAD_POSITION
    return Origin(topic, partition, offset)


def _letter(topics: Topics, record: Any) -> DeadLetter:  # noqa: ANN401 - aiokafka ships no types
    headers, repeated = _header_map(record.headers or ())
    origin = _origin(topics, headers, repeated)
    where = "{}[{}]@{}".format(
        *(headers.get(name, b"-").decode("utf-8", "replace") for name in _POSITION_HEADERS)
    )
    return DeadLetter(
        partition=record.partition,
        offset=record.offset,
        stage=_shown(headers.get(h.ERROR_STAGE, b"").decode("utf-8", "replace")) or "unknown",
        reason=_shown(headers.get(h.ERROR_REASON, b"").decode("utf-8", "replace")),
        where=_shown(where),
        origin=origin if isinstance(origin, Origin) else None,
        problem=origin if isinstance(origin, str) else None,
        message_id=_attribute(record.value, headers, "id"),
        message_type=_attribute(record.value, headers, "type"),
        source=_attribute(record.value, headers, "source"),
        key=record.key,
        value=record.value,
    )


async def list_dead_letters(
    kafka: KafkaSettings, topics: Topics, *, limit: int | None = None
) -> list[DeadLetter]:
    """The dead letters, in the order of their originals (the last `limit` when given)."""
    letters = [_letter(topics, record) async for record in read_records(kafka, topics.dlq)]
    letters.sort(key=_listed_order)
    return letters[-limit:] if limit else letters


def _listed_order(letter: DeadLetter) -> tuple[str, int, int, int, int]:
    """By original position; letters naming no readable position first, in topic order."""
    if letter.origin is None:
        return ("", -1, -1, letter.partition, letter.offset)
    origin = letter.origin
    return (origin.topic, origin.partition, origin.offset, letter.partition, letter.offset)


class _Originals:
    """Reads single records back by position: group-less, read_committed, bounded waits."""

    def __init__(self, kafka: KafkaSettings, wait: float) -> None:
        self._kafka = kafka
        self._wait = wait
        # "earliest": a position deleted between the range check and the fetch resets
        # forward, and the first record then lies past it, which reads as "gone".
        self._consumer = make_consumer(
            kafka, group_id=None, auto_offset_reset="earliest", client_id="prik-dlq-replay"
        )
        self._partitions: dict[str, int] = {}
        self._ranges: dict[TopicPartition, tuple[int, int]] = {}
        self._assigned: TopicPartition | None = None
        # The offset after the last record read: letters are mostly in their originals'
        # order, and not seeking there keeps the records already fetched after it.
        self._next: int | None = None

    async def start(self, wanted: set[str]) -> None:
        """Connect, and learn the partition count of each topic in `wanted` that exists."""
        async with admin_client(self._kafka) as admin:
            with kafka_errors("describing the original topics"):
                # Only existing topics are described: asking for a missing one by name may create it.
                existing = wanted.intersection(await admin.list_topics())
                described = await admin.describe_topics(sorted(existing)) if existing else []
        for topic in described:
            if not topic["error_code"]:
                self._partitions[topic["topic"]] = len(topic["partitions"])
        with kafka_errors(f"connecting to Kafka at {self._kafka.bootstrap}"):
            await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def read(self, origin: Origin) -> Any | str:  # noqa: ANN401 - aiokafka's ConsumerRecord
        """The record at `origin`, or why there is none."""
        tp = TopicPartition(origin.topic, origin.partition)
        with kafka_errors(f"reading the original at {origin}"):
            missing = await self._missing(origin, tp)
            return missing if missing is not None else await self._fetch(origin, tp)

    async def _missing(self, origin: Origin, tp: TopicPartition) -> str | None:
        """Why `origin` cannot hold a record, as far as topic metadata and offsets tell."""
        count = self._partitions.get(origin.topic)
        if count is None:
            return Skip.NO_TOPIC
        if origin.partition >= count:
            return Skip.NO_PARTITION
        if self._assigned != tp:
            self._consumer.assign([tp])
            self._assigned = tp
            self._next = None
        first, end = await self._range(tp)
        if origin.offset >= end:
            return Skip.BEYOND_END
        return Skip.GONE if origin.offset < first else None

    async def _fetch(self, origin: Origin, tp: TopicPartition) -> Any | str:  # noqa: ANN401 - as above
        consumer = self._consumer
        if self._next != origin.offset:
            consumer.seek(tp, origin.offset)
        self._next = None
        _, end = await self._range(tp)
        deadline = time.monotonic() + self._wait
        while True:
            batch = await consumer.getmany(tp, timeout_ms=250, max_records=1)
            for record in batch.get(tp, ()):
                if record.offset == origin.offset:
                    self._next = record.offset + 1
                    return record
                if record.offset > origin.offset:
                    # Compacted away, aborted, or a transaction marker: not a record to replay.
                    return Skip.NOTHING_THERE
            if await consumer.position(tp) >= end:
                return Skip.NOTHING_THERE
            if time.monotonic() > deadline:
                msg = f"reading the original at {origin}: no answer from Kafka within {self._wait:g} s"
                raise KafkaError(msg, retriable=True)

    async def _range(self, tp: TopicPartition) -> tuple[int, int]:
        """The first offset and the end (last stable offset) of `tp`, once per replay."""
        if tp not in self._ranges:
            first = (await self._consumer.beginning_offsets([tp]))[tp]
            end = (await self._consumer.end_offsets([tp]))[tp]
            self._ranges[tp] = (first, end)
        return self._ranges[tp]


def _matches(letter: DeadLetter, original: Any) -> bool:  # noqa: ANN401 - aiokafka's ConsumerRecord
    """Whether `letter` is a copy of `original`, as the router and the consumers write them.

    Both keep the original's key and value (both leave the value empty only when it
    is too large to fit next to the error headers, or when the original had neither
    key nor value), so a letter with other bytes, or naming another message id, was
    not made from this record.
    """
    if letter.key != original.key:
        return False
    # An empty letter keeps only the position: its original was too large to travel with it.
    if letter.value and letter.value != (original.value or b""):
        return False
    if letter.message_id is not None:
        headers, _ = _header_map(original.headers or ())
        return _attribute(original.value, headers, "id") == letter.message_id
    return True


def _replay_headers(original: Any, marker: bytes) -> list[tuple[str, bytes | None]]:  # noqa: ANN401 - aiokafka's ConsumerRecord
    """The original's headers as they were, with this replay's marker in place of any earlier one."""
    kept = [(name, value) for name, value in original.headers or () if name != REPLAY_HEADER]
    return [*kept, (REPLAY_HEADER, marker)]


async def replay_dead_letters(
    kafka: KafkaSettings,
    topics: Topics,
    chosen: Callable[[DeadLetter], bool],
    *,
    only_new: bool = False,
    read_wait: float = DEFAULT_READ_WAIT,
    on_skip: Callable[[Skipped], None] | None = None,
) -> ReplayReport:
    """Republish the originals of the chosen dead letters to the topics they came from.

    Letters are taken in dead-letter-topic order. With `only_new`, letters an earlier
    `only_new` replay already took are left out: how far replays have got is kept as
    the offsets of the consumer group `<prefix>-dlq-replay`, so Kafka itself
    remembers it. Progress is recorded for every letter finished (its original sent
    and acknowledged, or the letter skipped for good), also when Kafka fails part-way,
    so the run after a failure starts at the first letter not finished. A failure to
    read or publish raises `KafkaError`; a letter that cannot be replayed is skipped.
    """
    letters = [d for d in await list_dead_letters(kafka, topics) if chosen(d)]
    letters.sort(key=lambda d: (d.partition, d.offset))
    report = ReplayReport()
    progress: AIOKafkaConsumer | None = None
    done: dict[int, int] = {}
    if only_new:
        progress = make_consumer(kafka, group_id=f"{topics.prefix}-dlq-replay", client_id="prik-dlq-replay")
        with kafka_errors(f"connecting to Kafka at {kafka.bootstrap}"):
            await progress.start()
    failing = True
    try:
        if progress is not None:
            replayed_up_to = await _replayed_up_to(progress, topics, letters)
            letters = [d for d in letters if d.offset >= replayed_up_to.get(d.partition, 0)]
        if letters:
            replay = _Replay(kafka, topics, read_wait, on_skip)
            await replay.run(letters, report, done)
        failing = False
    finally:
        if progress is not None:
            try:
                await _record_progress(progress, topics, done)
            except KafkaError:
                # Kafka is already failing the replay: that error is the one to report.
                if not failing:
                    raise
            finally:
                await progress.stop()
    return report


class _Replay:
    """One run: the originals' reader, the producer, and which originals it has sent."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: Topics,
        read_wait: float,
        on_skip: Callable[[Skipped], None] | None,
    ) -> None:
        self._kafka = kafka
        self._topics = topics
        self._on_skip = on_skip
        self._originals = _Originals(kafka, read_wait)
        self._producer = make_producer(kafka, client_id="prik-dlq-replay")
        self._sent: dict[Origin, DeadLetter] = {}

    async def run(self, letters: list[DeadLetter], report: ReplayReport, done: dict[int, int]) -> None:
        """Replay `letters` in order; `done` says, per dead-letter partition, where the finished ones end."""
        await self._originals.start({d.origin.topic for d in letters if d.origin is not None})
        try:
            with kafka_errors(f"connecting to Kafka at {self._kafka.bootstrap}"):
                await self._producer.start()
            for letter in letters:
                skipped = await self._one(letter)
                if skipped is None:
                    report.replayed.append(letter)
                else:
                    report.skipped.append(skipped)
                    if self._on_skip is not None:
                        self._on_skip(skipped)
                done[letter.partition] = letter.offset + 1
        finally:
            with contextlib.suppress(AIOKafkaError):
                await self._producer.stop()
            with contextlib.suppress(AIOKafkaError):
                await self._originals.stop()

    async def _one(self, letter: DeadLetter) -> Skipped | None:
        """Republish `letter`'s original; None when it was sent, else why not."""
        origin = letter.origin
        if origin is None:
            return Skipped(letter, letter.problem or Skip.BAD_POSITION)
        first = self._sent.get(origin)
        if first is not None:
            # A consumer that crashed between its dead letter and its commit writes a second one.
            return Skipped(letter, Skip.SAME_ORIGINAL, f"as letter {first.partition}@{first.offset}")
        original = await self._originals.read(origin)
        if isinstance(original, str):
            return Skipped(letter, original)
        if not _matches(letter, original):
            return Skipped(letter, Skip.MISMATCH, "not replayed; check who wrote it")
        marker = f"{self._topics.dlq}:{letter.partition}:{letter.offset}".encode()
        with kafka_errors(f"replaying to {origin.topic}"):
            # The original partition: where the record was, so it keeps its place among its key's records.
            await self._producer.send_and_wait(
                origin.topic,
                original.value,
                key=original.key,
                partition=origin.partition,
                headers=_replay_headers(original, marker),
            )
        self._sent[origin] = letter
        return None


async def _replayed_up_to(
    progress: AIOKafkaConsumer, topics: Topics, letters: list[DeadLetter]
) -> dict[int, int]:
    partitions = sorted({d.partition for d in letters})
    progress.assign([TopicPartition(topics.dlq, p) for p in partitions])
    done: dict[int, int] = {}
    with kafka_errors("reading how far earlier replays got"):
        for p in partitions:
            committed = await progress.committed(TopicPartition(topics.dlq, p))
            done[p] = committed or 0
    return done


async def _record_progress(progress: AIOKafkaConsumer, topics: Topics, done: dict[int, int]) -> None:
    if not done:
        return
    try:
        await progress.commit({TopicPartition(topics.dlq, p): offset for p, offset in done.items()})
    except AIOKafkaError as exc:
        raise translate(exc, "recording how far the replay got") from exc
