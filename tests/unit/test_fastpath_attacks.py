"""Generated attacks on the consumer's and producers' fast paths, each held to what it replaced.

murmur2 and the partitioner against aiokafka's, receipt ids against uuid.uuid5, the header
fast path against the general one, the attempt deadline against asyncio's rules of
cancellation, and the outbox's batches against failures that must reach each writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import uuid
from typing import Any

import pytest
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    ProducerClosed,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from aiokafka.producer.message_accumulator import MessageAccumulator
from aiokafka.record.default_records import DefaultRecordBatch
from aiokafka.structs import RecordMetadata, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.batching import BatchWriter
from consumers.deadline import Deadline
from consumers.message_log import about
from consumers.receipts import _RECEIPT_NAMESPACE, receipt_id
from contracts import KafkaError, NotAuthorisedError, PrikError, Topics
from contracts.headers import normalise_headers
from prik.partitioning import KeyPartitioner, murmur2
from prik.settings import KafkaSettings
from producers import Publisher, video_queue_notice

# -- murmur2 and the partitioner ------------------------------------------------


@settings(max_examples=3000, deadline=None)
@given(st.binary(min_size=0, max_size=300))
def test_murmur2_is_aiokafkas_for_arbitrary_bytes(key: bytes) -> None:
    assert murmur2(key) == aiokafka_murmur2(key)


@settings(max_examples=500, deadline=None)
@given(
    st.integers(0, 80).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
    st.sampled_from([0x80, 0xFF, 0x7F]),
)
def test_murmur2_with_high_bytes_at_every_tail_length(key: bytes, high: int) -> None:
    for tail in range(4):
        data = key + bytes([high]) * tail
        assert murmur2(data) == aiokafka_murmur2(data)
        assert murmur2(bytes([high]) * len(data)) == aiokafka_murmur2(bytes([high]) * len(data))


def test_murmur2_java_reference_values() -> None:
    # org.apache.kafka.common.utils.UtilsTest#testMurmur2 (signed Java ints).
    cases = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536}
    cases |= {
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    }
    cases |= {b"abc": 479470107}
    for key, java in cases.items():
        assert murmur2(key) == java & 0xFFFFFFFF


@settings(max_examples=1500, deadline=None)
@given(st.binary(min_size=0, max_size=300), st.integers(1, 64))
def test_partition_is_aiokafkas_default_for_any_key_and_count(key: bytes, count: int) -> None:
    partitions = list(range(count))
    ours = KeyPartitioner()
    expected = DefaultPartitioner()(key, partitions, partitions)
    assert ours(key, partitions, partitions) == expected
    assert ours(key, partitions, partitions) == expected  # from the cache


@given(st.binary(min_size=1, max_size=40))
def test_a_key_that_is_not_bytes_partitions_as_aiokafkas(key: bytes) -> None:
    """aiokafka's default takes any buffer (bytearray, memoryview); so must the replacement."""
    partitions = list(range(6))
    expected = DefaultPartitioner()(key, partitions, partitions)
    ours = KeyPartitioner()
    assert ours(bytearray(key), partitions, partitions) == expected
    assert ours(memoryview(key), partitions, partitions) == expected


def test_an_unkeyed_record_is_spread_over_the_available_partitions_only() -> None:
    ours = KeyPartitioner()
    seen = {ours(None, [0, 1, 2, 3, 4, 5], [1, 4]) for _ in range(200)}
    assert seen == {1, 4}
    assert {ours(None, [0, 1, 2], []) for _ in range(200)} == {0, 1, 2}


# -- receipt ids ----------------------------------------------------------------


@settings(max_examples=1000)
@given(st.text(min_size=1, max_size=30), st.uuids().map(str))
def test_receipt_id_is_uuid5(lps: str, message_id: str) -> None:
    message = video_queue_notice(
        "minlaege-video", "123456789012", event="joined", queue_entry_id="q", message_id=message_id
    )
    expected = uuid.uuid5(_RECEIPT_NAMESPACE, f"{lps}|{message.source}|{message.id}")
    assert receipt_id(lps, message) == str(expected)
    assert uuid.UUID(receipt_id(lps, message)).version == 5


# -- the header fast path -------------------------------------------------------


def _slow(headers: list[Any]) -> tuple[tuple[str, bytes], ...]:
    """normalise_headers as it was before its fast path."""
    pairs: list[tuple[str, bytes]] = []
    for item in headers:
        if not isinstance(item, tuple | list) or len(item) != 2:
            continue
        name, value = item
        if isinstance(name, bytes | bytearray):
            name = bytes(name).decode("utf-8", "replace")
        if not isinstance(name, str):
            continue
        if isinstance(value, str):
            value = value.encode("utf-8", "surrogatepass")
        if isinstance(value, bytes | bytearray | memoryview):
            pairs.append((name, bytes(value)))
    return tuple(pairs)


_NAME = st.one_of(st.text(max_size=10), st.binary(max_size=10), st.none(), st.integers())
_VALUE = st.one_of(
    st.binary(max_size=10), st.none(), st.text(max_size=10), st.integers(), st.builds(bytearray)
)
_ITEM = st.one_of(
    st.tuples(_NAME, _VALUE),
    st.lists(st.one_of(_NAME, _VALUE), max_size=3).map(tuple),
    st.lists(st.one_of(_NAME, _VALUE), min_size=2, max_size=2),
    st.none(),
    st.binary(max_size=4),
)


@settings(max_examples=1000)
@given(st.lists(_ITEM, max_size=8))
def test_header_fast_path_equals_the_general_one(headers: list[Any]) -> None:
    ours = normalise_headers(headers)
    assert ours == _slow(headers)
    assert all(type(n) is str and type(v) is bytes for n, v in ours)


def test_a_null_header_value_is_absent() -> None:
    assert normalise_headers([("prik-route", None), ("content-type", b"x")]) == (("content-type", b"x"),)


# -- the attempt deadline -------------------------------------------------------


async def test_the_deadline_fires_as_timeout() -> None:
    with pytest.raises(TimeoutError):
        async with Deadline(0.01):
            await asyncio.sleep(10)
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_a_block_that_finishes_in_time_is_left_alone() -> None:
    async with Deadline(10):
        await asyncio.sleep(0)
    await asyncio.sleep(0.02)  # the timer was cancelled: nothing arrives later


@pytest.mark.parametrize("order", ["stop-first", "expiry-first"])
async def test_a_stop_during_an_attempt_stays_a_cancellation(order: str) -> None:
    """stop or a revoke cancels the lane's task; with or without the timer, CancelledError comes out."""
    entered = asyncio.Event()

    async def attempt() -> None:
        async with Deadline(0.05 if order == "expiry-first" else 10):
            entered.set()
            try:
                await asyncio.sleep(10)
            finally:
                # A deliverer's own cleanup that outlives the expiry.
                await asyncio.sleep(0.1 if order == "expiry-first" else 0)

    task = asyncio.create_task(attempt())
    await entered.wait()
    if order == "expiry-first":
        await asyncio.sleep(0.07)  # expired: the block is in its cleanup
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_a_cancellation_requested_before_the_block_is_not_a_timeout() -> None:
    async def attempt() -> None:
        asyncio.current_task().cancel()  # type: ignore[union-attr]
        async with Deadline(0.001):
            await asyncio.sleep(1)

    task = asyncio.create_task(attempt())
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_deliverer_swallowing_the_expiry_leaves_no_pending_cancel() -> None:
    async def attempt() -> str:
        async with Deadline(0.01):
            with contextlib.suppress(asyncio.CancelledError):  # a badly written deliverer
                await asyncio.sleep(1)
        await asyncio.sleep(0.01)  # the withdrawn cancel does not hit the next await
        return "went on"

    assert await asyncio.create_task(attempt()) == "went on"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.floats(0.0, 0.01), st.floats(0.0, 0.01)), min_size=1, max_size=8))
async def test_many_deadlines_in_sequence_each_time_their_own_attempt(
    plan: list[tuple[float, float]],
) -> None:
    for limit, work in plan:
        try:
            async with Deadline(limit + 0.002):
                await asyncio.sleep(work)
        except TimeoutError:
            pass
        assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


# -- the outbox's batches -------------------------------------------------------


class _NoClient:
    """A fake producer's aiokafka base without its unclosed-producer warning (nothing was opened)."""

    def __del__(self) -> None:
        pass


class _FailingBatch:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    def append(self, **_: object) -> None:
        raise self.error

    def close(self) -> None:
        pass


class _FakeProducer(_NoClient, AIOKafkaProducer):  # type: ignore[misc]  # aiokafka ships no types
    """A producer whose batches cannot take the record (a header value aiokafka refuses)."""

    def __init__(self, error: BaseException) -> None:  # no client: nothing is opened
        self._closed = False  # running, as far as the code under test can tell
        self.error = error

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    def create_batch(self) -> _FailingBatch:
        return _FailingBatch(self.error)


async def test_a_record_the_batch_refuses_fails_its_writer_instead_of_hanging() -> None:
    writer = BatchWriter()
    producer = _FakeProducer(TypeError("header value must be bytes"))
    writes = [
        asyncio.create_task(writer.write(producer, "t", f"k{i}".encode(), b"v", [("h", b"x")]))
        for i in range(5)
    ]
    done, pending = await asyncio.wait(writes, timeout=2)
    assert not pending, "writers were left waiting for ever"
    assert all(isinstance(t.exception(), TypeError) for t in done)
    # The writer keeps working for the next records.
    again = asyncio.create_task(writer.write(producer, "t", b"k", b"v", []))
    await asyncio.wait([again], timeout=2)
    assert again.done()
    assert isinstance(again.exception(), TypeError)
    await writer.close()


def test_batches_are_only_for_real_producers_and_small_keyed_records() -> None:
    producer = AIOKafkaProducer.__new__(AIOKafkaProducer)
    assert BatchWriter.takes(producer, b"k", b"v")
    assert not BatchWriter.takes(producer, None, b"v")
    assert not BatchWriter.takes(producer, b"k", None)
    assert not BatchWriter.takes(producer, b"k", b"x" * (64 * 1024))
    assert not BatchWriter.takes(object(), b"k", b"v")


# -- Publisher.publish_many's batches -------------------------------------------


class _Batch:
    def __init__(self) -> None:
        self.records = 0

    def append(self, **_: object) -> object:
        self.records += 1
        return object()

    def close(self) -> None:
        pass


class _StallingProducer(_NoClient, AIOKafkaProducer):  # type: ignore[misc]  # aiokafka ships no types
    """Takes the first batch, then stalls on the next one until cancelled."""

    def __init__(self) -> None:  # no client: nothing is opened
        self._closed = False  # running, as far as the code under test can tell
        self.acks: list[asyncio.Future[Any]] = []
        self.stalled = asyncio.Event()

    async def start(self) -> None:
        pass

    async def flush(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(6))

    def create_batch(self) -> _Batch:
        return _Batch()

    async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        if self.acks:
            self.stalled.set()
            await asyncio.sleep(3600)
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.acks.append(ack)
        return ack


async def test_a_cancelled_publish_many_leaves_no_unretrieved_batch_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The batch already queued fails after its caller was cancelled: nothing is printed about it."""
    producer = _StallingProducer()
    publisher = Publisher(
        KafkaSettings(bootstrap="127.0.0.1:1"),
        "minlaege-video",
        Topics("t"),
        producer_factory=lambda _: producer,
    )
    clinics = [str(100000000000 + i) for i in range(30)]
    notices = [video_queue_notice("minlaege-video", c, event="joined", queue_entry_id="q") for c in clinics]
    async with publisher:
        task = asyncio.create_task(publisher.publish_many(notices))
        await producer.stalled.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        producer.acks[0].set_exception(KafkaTimeoutError())
        await asyncio.sleep(0.01)
    producer.acks.clear()
    del task
    gc.collect()
    await asyncio.sleep(0)
    assert "never retrieved" not in caplog.text


# -- each writer waits for its own batch's acknowledgement ----------------------


class _AckingProducer(_NoClient, AIOKafkaProducer):  # type: ignore[misc]  # aiokafka ships no types
    """Real batch builders; each queued batch's acknowledgement is resolved by the test."""

    def __init__(self) -> None:  # no client: nothing is opened
        self._closed = False  # running, as far as the code under test can tell
        self.queued: list[tuple[int, asyncio.Future[Any], list[bytes]]] = []
        self._builders = MessageAccumulator(None, 256 * 1024, 0, 30, loop=asyncio.get_running_loop())

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(6))

    def create_batch(self) -> Any:
        return self._builders.create_builder()

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        keys = [r.key for r in DefaultRecordBatch(bytearray(batch._build()))]
        self.queued.append((partition, ack, keys))
        return ack


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(0, 40), min_size=1, max_size=60), st.integers(0, 2**32))
async def test_writers_wait_for_their_own_batch_and_get_its_outcome(keys: list[int], seed: int) -> None:
    # Which batches fail comes from a seed: a hypothesis draw mid-way could abandon the example
    # with its writers' errors unread.
    rng = random.Random(seed)
    producer = _AckingProducer()
    writer = BatchWriter()
    tasks = {
        i: asyncio.create_task(
            writer.write(producer, "t", f"key-{k}".encode(), str(i).encode(), [("h", b"v")])
        )
        for i, k in enumerate(keys)
    }
    for _ in range(1000):  # the flusher's turns: no I/O, no timers
        if sum(len(q[2]) for q in producer.queued) == len(keys):
            break
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not any(t.done() for t in tasks.values()), "a writer returned before Kafka acknowledged"
    partitions = list(range(6))
    failed: set[bytes] = set()
    for partition, ack, batch_keys in producer.queued:
        assert all(DefaultPartitioner()(k, partitions, partitions) == partition for k in batch_keys)
        if rng.random() < 0.5:
            ack.set_exception(KafkaTimeoutError())
            failed |= set(batch_keys)
        else:
            ack.set_result(None)
    await asyncio.wait(list(tasks.values()), timeout=5)
    for i, k in enumerate(keys):
        key = f"key-{k}".encode()
        if key in failed:
            assert isinstance(tasks[i].exception(), KafkaTimeoutError)
        else:
            assert tasks[i].result() is None
    await writer.close()


def test_the_message_log_never_carries_a_cpr() -> None:
    notice = video_queue_notice(
        "minlaege-video", "123456789012", event="called", queue_entry_id="q", cpr="0101901234"
    )
    with structlog.testing.capture_logs() as lines:
        about(notice, "123456789012", 2).warning("delivery failed, will retry", reason="x")
    assert lines
    assert "0101901234" not in repr(lines)
    assert lines[0]["message_id"] == notice.id


# -- Publisher.publish_many when Kafka fails it ---------------------------------


class _BrokenProducer(_StallingProducer):
    """Fails at one step of a batched publish with one of aiokafka's errors."""

    def __init__(self, step: str, error: type[Exception]) -> None:
        super().__init__()
        self.step, self.error = step, error

    async def partitions_for(self, topic: str) -> set[int]:
        if self.step == "metadata":
            raise self.error
        return set(range(6))

    async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        if self.step == "queue" and self.acks:
            raise self.error
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.step == "ack":
            ack.set_exception(self.error())
        else:
            ack.set_result(RecordMetadata(topic, partition, None, 7, -1, 0, None))
        self.acks.append(ack)
        return ack


@pytest.mark.parametrize("step", ["metadata", "queue", "ack"])
@pytest.mark.parametrize(
    "error",
    [KafkaConnectionError, KafkaTimeoutError, UnknownTopicOrPartitionError, TopicAuthorizationFailedError],
)
async def test_a_failing_kafka_is_one_prik_error_and_nothing_printed(
    step: str, error: type[Exception], capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    producer = _BrokenProducer(step, error)
    publisher = Publisher(
        KafkaSettings(bootstrap="127.0.0.1:1"),
        "minlaege-video",
        Topics("t"),
        producer_factory=lambda _: producer,
    )
    notices = [
        video_queue_notice("minlaege-video", str(100000000000 + i), event="joined", queue_entry_id="q")
        for i in range(40)
    ]
    async with publisher:
        with pytest.raises(PrikError) as caught:
            await publisher.publish_many(notices)
    assert isinstance(
        caught.value, NotAuthorisedError if error is TopicAuthorizationFailedError else KafkaError
    )
    assert "\n" not in str(caught.value)
    assert publisher.topic in str(caught.value)
    producer.acks.clear()
    gc.collect()
    await asyncio.sleep(0)
    assert capsys.readouterr() == ("", "")
    assert caplog.text == ""


# -- a producer stopped while a batch waits to be queued -------------------------


class _AccumulatorProducer(_NoClient, AIOKafkaProducer):  # type: ignore[misc]  # aiokafka ships no types
    """aiokafka's accumulator behind send_batch/stop as aiokafka 0.14 wires them; the test is the sender."""

    def __init__(self) -> None:  # no client: nothing is opened
        self._closed = False  # running, as far as the code under test can tell
        self.acc = MessageAccumulator(None, 256 * 1024, 0, 30, loop=asyncio.get_running_loop())

    async def start(self) -> None:
        pass

    async def flush(self) -> None:
        pass

    async def stop(self) -> None:
        # As AIOKafkaProducer.stop: marked closed, then the accumulator closes; its sender goes.
        self._closed = True
        self.acc._closed = True

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(6))

    def create_batch(self) -> Any:
        return self.acc.create_builder()

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = await self.acc.add_batch(batch, TopicPartition(topic, partition), 30)
        return future

    async def drain_one(self) -> None:
        """The sender takes the queued batch and Kafka acknowledges it."""
        for _ in range(1000):
            if self.acc._batches:
                break
            await asyncio.sleep(0)
        (tp,) = self.acc._batches
        self.acc._pop_batch(tp).done(base_offset=0)


async def test_a_publish_many_whose_producer_stops_while_it_queues_ends() -> None:
    producer = _AccumulatorProducer()
    publisher = Publisher(
        KafkaSettings(bootstrap="127.0.0.1:1"),
        "minlaege-video",
        Topics("t"),
        producer_factory=lambda _: producer,
    )
    url = "https://video.example.dk/room?" + "x" * 1900
    notices = [
        video_queue_notice(
            "minlaege-video", "123456789012", event="joined", queue_entry_id="q", consultation_url=url
        )
        for _ in range(150)  # two batches
    ]
    await publisher.start()
    call = asyncio.create_task(publisher.publish_many(notices))
    await asyncio.sleep(0.01)  # the first batch is queued, the second waits for it to go
    await producer.stop()  # a restart or stop
    await producer.drain_one()  # the sender flushes the first on its way out
    done, _ = await asyncio.wait([call], timeout=2)
    assert done, "publish_many waited for ever on a batch queued into a stopped producer"
    error = call.exception()
    assert isinstance(error, KafkaError)
    assert "ProducerClosed" in str(error)


async def test_an_outbox_write_whose_producer_stops_while_it_queues_ends() -> None:
    producer = _AccumulatorProducer()
    writer = BatchWriter()
    big = b"x" * 60_000
    # Two batches of four: the second waits for the first to go.
    writes = [asyncio.create_task(writer.write(producer, "t", b"one-key", big, [])) for _ in range(8)]
    await asyncio.sleep(0.01)
    await producer.stop()
    await producer.drain_one()
    done, pending = await asyncio.wait(writes, timeout=2)
    assert not pending, "outbox writes waited for ever on a batch queued into a stopped producer"
    outcomes = [t.exception() for t in done]
    assert all(o is None or isinstance(o, ProducerClosed) for o in outcomes)
    assert any(isinstance(o, ProducerClosed) for o in outcomes)
    await writer.close()
