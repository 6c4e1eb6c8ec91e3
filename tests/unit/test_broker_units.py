"""The router's small parts: the dedup window, tables, dead letters, unsafe-default guards."""

from __future__ import annotations

from datetime import timedelta

from broker import DedupWindow, DirectoryTable, Incoming
from broker.outputs import dead_letter
from contracts import Topics, codec
from contracts import headers as h
from prik.kafka import make_consumer, make_producer
from prik.settings import KafkaSettings
from tests.unit.clock import Clock


def test_dedup_window_forgets_after_its_window() -> None:
    clock = Clock()
    window = DedupWindow(timedelta(minutes=15), clock=clock)
    window.add("t", 0, "urn:prik:a", "id-1")
    assert window.seen("t", 0, "urn:prik:a", "id-1")
    assert not window.seen("t", 1, "urn:prik:a", "id-1")  # another partition, another owner
    assert not window.seen("t", 0, "urn:prik:b", "id-1")
    clock.now = 15 * 60 - 1
    assert window.seen("t", 0, "urn:prik:a", "id-1")
    clock.now = 15 * 60
    assert not window.seen("t", 0, "urn:prik:a", "id-1")


def test_dedup_window_is_bounded_and_forgets_revoked_partitions() -> None:
    window = DedupWindow(max_entries=100, clock=Clock())
    for i in range(1000):
        window.add("t", 0, "s", f"id-{i}")
    assert len(window) == 100
    assert window.seen("t", 0, "s", "id-999")
    assert not window.seen("t", 0, "s", "id-0")
    window.keep_only(set())
    assert len(window) == 0


def test_directory_table_applies_tombstones_and_skips_bad_values() -> None:
    table = DirectoryTable()
    table.apply(b"123456789012", codec.dumps({"lps": "lps-xmo"}))
    table.apply(b"223456789012", b"{not json")
    table.apply(b"323456789012", codec.dumps({"lps": "Not A Tenant"}))
    assert table.get("123456789012") is not None
    assert table.get("223456789012") is None
    assert table.get("323456789012") is None
    table.apply(b"123456789012", None)
    assert table.get("123456789012") is None


def test_dead_letter_keeps_the_original_bytes_and_says_where_and_why() -> None:
    rec = Incoming("prik.ingress.a", 2, 41, b"key", b"\x00raw", (("content-type", b"x"),))
    out = dead_letter(Topics(), rec, "parse", "not valid JSON (line 1, column 1)")
    headers = dict(out.headers)
    assert (out.topic, out.key, out.value) == ("prik.dlq", b"key", b"\x00raw")
    assert headers[h.ERROR_STAGE] == b"parse"
    assert headers[h.ORIGINAL_TOPIC] == b"prik.ingress.a"
    assert headers[h.ORIGINAL_PARTITION] == b"2"
    assert headers[h.ORIGINAL_OFFSET] == b"41"
    assert headers["content-type"] == b"x"


async def test_clients_are_built_with_safe_defaults() -> None:
    kafka = KafkaSettings(bootstrap="127.0.0.1:1")
    producer = make_producer(kafka)
    consumer = make_consumer(kafka, "t", group_id="g")
    try:
        # aiokafka keeps a transaction manager exactly when idempotence is on.
        assert producer._txn_manager is not None
        assert producer._sender._acks == -1  # acks=all
        assert consumer._enable_auto_commit is False
        assert consumer._isolation_level == "read_committed"
        assert consumer._auto_offset_reset == "earliest"
    finally:
        await producer.stop()
        await consumer.stop()


def test_task_table_never_goes_back_to_an_older_state() -> None:
    from datetime import UTC, datetime  # noqa: PLC0415 - this test only
    from uuid import uuid4  # noqa: PLC0415 - this test only

    from broker import TaskRecord, TaskTable  # noqa: PLC0415 - this test only
    from contracts import TaskStatus  # noqa: PLC0415 - this test only

    earlier = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    accepted = TaskRecord(
        task_id=uuid4(),
        requester="kommune-0101",
        lps="lps-xmo",
        recipient="123456789012",
        status=TaskStatus.ACCEPTED,
        request_id="r-1",
        updated_at=earlier,
    )
    completed = accepted.moved(TaskStatus.COMPLETED, earlier.replace(minute=5))
    table = TaskTable()
    key = str(accepted.task_id)
    table.put(key, completed)  # the router's own write, right after its commit
    table.apply(key.encode(), accepted.to_bytes())  # the reader catching up on an older record
    assert table.get(key) == completed
    table.apply(key.encode(), completed.moved(TaskStatus.COMPLETED, earlier.replace(minute=9)).to_bytes())
    row = table.get(key)
    assert row is not None
    assert row.updated_at.minute == 9


def test_dedup_window_keeps_partitions_that_stay_owned() -> None:
    window = DedupWindow(clock=Clock())
    window.add("t", 0, "s", "a")
    window.add("t", 1, "s", "b")
    window.keep_only({("t", 0)})
    assert window.seen("t", 0, "s", "a")
    assert not window.seen("t", 1, "s", "b")
