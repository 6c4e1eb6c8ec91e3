"""What only the bare router shows: batches, staged state, the topic snapshot, failures inside a rule.

These run against `Router` + `Batch` through the direct harness (no FastStream):
several records in one batch, a batch left uncommitted as an aborted
transaction leaves it, a cluster missing a topic, and rules that raise.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from broker import Batch, DirectoryTable, Incoming, Routed, TaskRecord, TaskTable
from contracts import (
    KafkaError,
    Message,
    Outcome,
    Receipt,
    TaskRequest,
    TaskStatus,
    Tenants,
    Topics,
    contains_cpr,
    parse,
    to_bytes,
)
from contracts import headers as h
from contracts.directory import DirectoryEntry
from producers import build
from tests.inmemory.harness import (
    CLINIC,
    CPR,
    UNKNOWN_CLINIC,
    DirectHarness,
    MissingTopicError,
    directory_value,
    encoded,
)

SECRET = f"lookup failed for patient {CPR}"


def video(clinic: str = CLINIC, *, message_id: str | None = None) -> Message:
    return build.video_queue_notice(
        "minlaege-video", clinic, event="joined", queue_entry_id="q-1", cpr=CPR, message_id=message_id
    )


def request_for(clinic: str = CLINIC, *, task_id: uuid.UUID | None = None) -> TaskRequest:
    return build.task_request("kommune-0101", clinic, code="KOL-1", task_id=task_id)


def task_key(message: TaskRequest) -> str:
    return str(message.data.task_id)


def dead_letter_headers(routed: Routed, topics: Topics) -> dict[str, bytes]:
    [dead] = [o for o in routed.outputs if o.topic == topics.dlq]
    return dict(dead.headers)


def receipts_in(routed: Routed, topic: str) -> list[Receipt]:
    out = [parse(o.value) for o in routed.outputs if o.topic == topic]
    return [m for m in out if isinstance(m, Receipt)]


def dedup_has(direct: DirectHarness, tenant: str, message: Message, partition: int = 0) -> bool:
    return direct.router.dedup.seen(direct.topics.ingress(tenant), partition, message.source, message.id)


class Calls:
    """A catch-up the test can count, and make do something."""

    def __init__(self, then: Callable[[], None] = lambda: None) -> None:
        self.count = 0
        self._then = then

    async def __call__(self) -> None:
        self.count += 1
        self._then()


# -- dedup within a batch ------------------------------------------------------------------------


async def test_the_same_source_and_id_twice_in_one_batch_is_routed_once(direct: DirectHarness) -> None:
    message = video()
    txn = direct.begin()
    first = await txn.send("minlaege-video", message)
    second = await txn.send("minlaege-video", message, binary=True)
    assert (first.verdict, second.verdict) == ("routed", "duplicate")
    assert second.outputs == []
    # Staged on the batch, not yet in the window: the transaction has not committed.
    assert not dedup_has(direct, "minlaege-video", message)
    assert len(direct.router.dedup) == 0
    txn.commit()
    assert dedup_has(direct, "minlaege-video", message)
    assert direct.seen.messages(direct.topics.deliver("lps-xmo")) == [message]
    with direct.transaction() as later:
        assert (await later.send("minlaege-video", message)).verdict == "duplicate"
    assert len(direct.seen.records[direct.topics.deliver("lps-xmo")]) == 1


async def test_the_same_id_from_two_sources_in_one_batch_is_no_duplicate(direct: DirectHarness) -> None:
    shared = str(uuid.uuid4())
    video_notice = video(message_id=shared)
    referral = build.referral_status_notice(
        "kommune-0101",
        CLINIC,
        referral_id="r-1",
        municipality_code="101",
        offer="TeleKOL",
        status="accepted",
        cpr=CPR,
        message_id=shared,
    )
    with direct.transaction() as txn:
        verdicts = [
            (await txn.send(t, m)).verdict
            for t, m in (("minlaege-video", video_notice), ("kommune-0101", referral))
        ]
    assert verdicts == ["routed", "routed"]
    assert direct.seen.messages(direct.topics.deliver("lps-xmo")) == [video_notice, referral]


async def test_a_refused_record_leaves_no_dedup_entry_so_its_fixed_resend_is_routed(
    direct: DirectHarness,
) -> None:
    wrong = video(UNKNOWN_CLINIC)
    fixed = video(CLINIC, message_id=wrong.id)
    with direct.transaction() as txn:
        refused = await txn.send("minlaege-video", wrong)
        assert (refused.verdict, refused.stage) == ("rejected", "route")
        # It passed the dedup rule before the route rule refused it: rolled back.
        assert txn.batch.seen == set()
        assert (await txn.send("minlaege-video", fixed)).verdict == "routed"
    assert direct.seen.messages(direct.topics.deliver("lps-xmo")) == [fixed]
    [rejected] = direct.receipts("minlaege-video")
    assert (rejected.data.outcome, rejected.data.message_id) == (Outcome.REJECTED, wrong.id)


async def test_a_record_refused_in_a_committed_batch_is_routed_once_the_directory_is_fixed(
    direct: DirectHarness,
) -> None:
    message = video(UNKNOWN_CLINIC)
    await direct.send("minlaege-video", message)
    assert not dedup_has(direct, "minlaege-video", message)
    await direct.publish(direct.topics.directory, directory_value("lps-xmo"), key=UNKNOWN_CLINIC.encode())
    await direct.send("minlaege-video", message)
    assert direct.seen.messages(direct.topics.deliver("lps-xmo")) == [message]
    assert dedup_has(direct, "minlaege-video", message)


async def test_an_expired_message_is_remembered_so_its_resend_is_a_duplicate(direct: DirectHarness) -> None:
    """Expiry is decided after dedup: an expired message is answered once, not once per resend."""
    message = build.video_queue_notice(
        "minlaege-video", CLINIC, event="joined", queue_entry_id="q", expires_in=timedelta(seconds=-1)
    )
    with direct.transaction() as txn:
        assert (await txn.send("minlaege-video", message)).verdict == "expired"
        assert (await txn.send("minlaege-video", message)).verdict == "duplicate"
    assert [r.data.outcome for r in direct.receipts("minlaege-video")] == [Outcome.EXPIRED]


async def test_a_replayed_copy_in_the_same_batch_passes_the_dedup_rule(direct: DirectHarness) -> None:
    """`prik dlq replay` sends a record again on purpose: it is routed even next to the original."""
    message = video()
    value, headers = encoded(message)
    with direct.transaction() as txn:
        first = await txn.route(direct.incoming("minlaege-video", value, headers=headers))
        plain = await txn.route(direct.incoming("minlaege-video", value, headers=headers))
        replayed = await txn.route(
            direct.incoming("minlaege-video", value, headers=(*headers, (h.REPLAY, b"1")))
        )
    assert [r.verdict for r in (first, plain, replayed)] == ["routed", "duplicate", "routed"]
    assert direct.seen.messages(direct.topics.deliver("lps-xmo")) == [message, message]


async def test_a_replayed_request_for_its_staged_task_is_delivered_without_a_second_task(
    direct: DirectHarness,
) -> None:
    request = request_for()
    value, headers = encoded(request)
    with direct.transaction() as txn:
        await txn.route(direct.incoming("kommune-0101", value, headers=headers))
        staged = txn.batch.tasks[task_key(request)]
        replayed = await txn.route(
            direct.incoming("kommune-0101", value, headers=(*headers, (h.REPLAY, b"1")))
        )
        assert txn.batch.tasks[task_key(request)] is staged
    assert replayed.verdict == "routed"
    assert [o.topic for o in replayed.outputs] == [direct.topics.deliver("lps-xmo")]
    assert len(direct.seen.records[direct.topics.tasks]) == 1


# -- staged task state -------------------------------------------------------------------------


async def test_a_status_in_the_same_batch_sees_the_staged_request(unique: str) -> None:
    catch_up = Calls()
    direct = DirectHarness(Topics(f"mem-{unique}"), catch_up_tasks=catch_up)
    request = request_for()
    key = task_key(request)
    txn = direct.begin()
    assert (await txn.send("kommune-0101", request)).verdict == "routed"
    staged = txn.batch.tasks[key]
    assert (staged.status, staged.lps, staged.request_id) == ("requested", "lps-xmo", request.id)
    assert direct.router.tasks.get(key) is None

    status = build.task_status("lps-xmo", request.data.task_id, "received")
    forwarded = await txn.send("lps-xmo", status)
    assert forwarded.verdict == "forwarded"
    # Found on the batch: no read of the tasks topic.
    assert catch_up.count == 0
    assert txn.batch.tasks[key].status == "received"
    assert direct.router.tasks.get(key) is None
    tasks_out = [
        TaskRecord.model_validate_json(o.value or b"")
        for o in forwarded.outputs
        if o.topic == direct.topics.tasks
    ]
    assert [t.status for t in tasks_out] == ["received"]

    txn.commit()
    committed = direct.router.tasks.get(key)
    assert committed is not None
    assert committed.status == "received"
    assert [m.id for m in direct.seen.messages(direct.topics.replies("kommune-0101"))] == [status.id]
    written = [TaskRecord.model_validate_json(v or b"") for v in direct.seen.values(direct.topics.tasks)]
    assert [t.status for t in written] == ["requested", "received"]


async def test_a_second_request_for_a_task_staged_in_the_batch_is_refused(direct: DirectHarness) -> None:
    first = request_for()
    again = request_for(task_id=uuid.UUID(task_key(first)))
    with direct.transaction() as txn:
        assert (await txn.send("kommune-0101", first)).verdict == "routed"
        refused = await txn.send("kommune-0101", again)
    assert (refused.verdict, refused.stage) == ("rejected", "task")
    assert b"already exists" in dead_letter_headers(refused, direct.topics)[h.ERROR_REASON]
    # The refusal did not undo the first request's staged task.
    task = direct.router.tasks.get(task_key(first))
    assert task is not None
    assert task.request_id == first.id


async def test_an_uncommitted_batch_leaves_no_dedup_entry_and_no_task(direct: DirectHarness) -> None:
    request = request_for()
    key = task_key(request)
    status = build.task_status("lps-xmo", request.data.task_id, "received")
    records = [
        direct.record_of("kommune-0101", request),
        direct.record_of("lps-xmo", status),
    ]
    aborted = direct.begin()
    assert [(await aborted.route(r)).verdict for r in records] == ["routed", "forwarded"]
    # The transaction aborted: nothing reaches the window, the table or the topics.
    assert len(direct.router.dedup) == 0
    assert len(direct.router.tasks) == 0
    assert not direct.seen.records[direct.topics.deliver("lps-xmo")]
    assert not direct.seen.records[direct.topics.tasks]

    # The transport reads the same records again: neither is a duplicate, the task is new.
    retried = direct.begin()
    assert [(await retried.route(r)).verdict for r in records] == ["routed", "forwarded"]
    retried.commit()
    task = direct.router.tasks.get(key)
    assert task is not None
    assert task.status == "received"
    assert direct.seen.messages(direct.topics.deliver("lps-xmo")) == [request]


async def test_a_status_after_the_request_committed_reads_the_table_not_the_topic(unique: str) -> None:
    catch_up = Calls()
    direct = DirectHarness(Topics(f"mem-{unique}"), catch_up_tasks=catch_up)
    request = request_for()
    await direct.send("kommune-0101", request)
    with direct.transaction() as txn:
        status = build.task_status("lps-xmo", request.data.task_id, "received")
        assert (await txn.send("lps-xmo", status)).verdict == "forwarded"
    assert catch_up.count == 0


async def test_an_unknown_task_is_read_from_the_tasks_topic_before_it_is_refused(
    direct: DirectHarness,
) -> None:
    request = request_for()
    key = task_key(request)
    written_elsewhere = TaskRecord(
        task_id=uuid.UUID(key),
        requester="kommune-0101",
        lps="lps-xmo",
        recipient=CLINIC,
        status=TaskStatus.REQUESTED,
        request_id=request.id,
        updated_at=request.time,
    )
    # Another instance wrote the task a moment ago: the reader brings it in on catch-up.
    catch_up = Calls(lambda: direct.router.tasks.apply(key.encode(), written_elsewhere.to_bytes()))
    direct.router.catch_up_tasks = catch_up
    with direct.transaction() as txn:
        known = await txn.send("lps-xmo", build.task_status("lps-xmo", uuid.UUID(key), "received"))
        assert catch_up.count == 1
        unknown = await txn.send("lps-xmo", build.task_status("lps-xmo", uuid.uuid4(), "received"))
        assert catch_up.count == 2
    assert known.verdict == "forwarded"
    assert (unknown.verdict, unknown.stage) == ("rejected", "task")


async def test_an_unknown_clinic_is_read_from_the_directory_topic_before_it_is_refused(
    direct: DirectHarness,
) -> None:
    catch_up = Calls(
        lambda: direct.router.directory.apply(UNKNOWN_CLINIC.encode(), directory_value("lps-other"))
    )
    direct.router.catch_up_directory = catch_up
    await direct.send("minlaege-video", video(CLINIC))
    assert catch_up.count == 0
    message = video(UNKNOWN_CLINIC)
    await direct.send("minlaege-video", message)
    assert catch_up.count == 1
    assert direct.seen.messages(direct.topics.deliver("lps-other")) == [message]


# -- the topic snapshot --------------------------------------------------------------------------


async def test_without_the_delivery_topic_the_message_is_dead_lettered_not_dropped(unique: str) -> None:
    topics = Topics(f"mem-{unique}")
    direct = DirectHarness(topics, missing=[topics.deliver("lps-xmo")])
    message = video()
    value, headers = encoded(message)
    with direct.transaction() as txn:
        routed = await txn.route(direct.incoming("minlaege-video", value, headers=headers))
    assert (routed.verdict, routed.stage) == ("rejected", "route")
    dead = dead_letter_headers(routed, topics)
    assert dead[h.ERROR_STAGE] == b"route"
    assert topics.deliver("lps-xmo").encode() in dead[h.ERROR_REASON]
    assert direct.seen.values(topics.dlq) == [value]
    [receipt] = direct.receipts("minlaege-video")
    assert (receipt.data.outcome, receipt.data.message_id) == (Outcome.REJECTED, message.id)
    assert not dedup_has(direct, "minlaege-video", message)


async def test_without_the_tasks_topic_a_request_is_dead_lettered_and_its_staging_rolled_back(
    unique: str,
) -> None:
    topics = Topics(f"mem-{unique}")
    direct = DirectHarness(topics, missing=[topics.tasks])
    request = request_for()
    with direct.transaction() as txn:
        refused = await txn.send("kommune-0101", request)
        assert (refused.verdict, refused.stage) == ("rejected", "route")
        assert topics.tasks.encode() in dead_letter_headers(refused, topics)[h.ERROR_REASON]
        assert txn.batch.tasks == {}
        assert txn.batch.seen == set()
    assert not direct.seen.records[topics.deliver("lps-xmo")]
    assert direct.receipts("kommune-0101")[0].data.outcome is Outcome.REJECTED
    assert len(direct.router.tasks) == 0

    # `prik topics apply` creates it; the same request sent again goes through.
    direct.existing.add(topics.tasks)
    await direct.send("kommune-0101", request)
    assert direct.seen.messages(topics.deliver("lps-xmo")) == [request]
    assert direct.router.tasks.get(task_key(request)) is not None


async def test_a_refused_status_restores_the_task_state_the_batch_had_staged(direct: DirectHarness) -> None:
    """A status staged over a staged request, then refused: the batch goes back to `requested`."""
    topics = direct.topics
    present = {*direct.existing}
    batch = Batch(topic_exists=present.__contains__)
    request = request_for()
    key = task_key(request)
    assert (await direct.router.route(direct.record_of("kommune-0101", request), batch)).verdict == "routed"
    present.discard(topics.tasks)
    status = build.task_status("lps-xmo", request.data.task_id, "received")
    refused = await direct.router.route(direct.record_of("lps-xmo", status), batch)
    assert (refused.verdict, refused.stage) == ("rejected", "route")
    assert batch.tasks[key].status == "requested"
    assert (topics.ingress("lps-xmo"), 0, status.source, status.id) not in batch.seen
    assert (topics.ingress("kommune-0101"), 0, request.source, request.id) in batch.seen


async def test_without_the_senders_replies_topic_an_expired_message_is_a_dead_letter(unique: str) -> None:
    topics = Topics(f"mem-{unique}")
    direct = DirectHarness(topics, missing=[topics.replies("minlaege-video")])
    message = build.video_queue_notice(
        "minlaege-video", CLINIC, event="joined", queue_entry_id="q", expires_in=timedelta(seconds=-1)
    )
    with direct.transaction() as txn:
        routed = await txn.send("minlaege-video", message)
    assert (routed.verdict, routed.stage) == ("rejected", "route")
    assert [o.topic for o in routed.outputs] == [topics.dlq]


async def test_a_status_for_a_requester_without_a_replies_topic_is_dead_lettered(unique: str) -> None:
    topics = Topics(f"mem-{unique}")
    direct = DirectHarness(topics, missing=[topics.replies("kommune-0101")])
    request = request_for()
    await direct.send("kommune-0101", request)
    with direct.transaction() as txn:
        refused = await txn.send("lps-xmo", build.task_status("lps-xmo", request.data.task_id, "received"))
    assert (refused.verdict, refused.stage) == ("rejected", "route")
    assert direct.receipts("lps-xmo")[-1].data.outcome is Outcome.REJECTED
    task = direct.router.tasks.get(task_key(request))
    assert task is not None
    assert task.status == "requested"


async def test_without_the_dlq_a_valid_message_is_still_routed(unique: str) -> None:
    topics = Topics(f"mem-{unique}")
    direct = DirectHarness(topics, missing=[topics.dlq])
    await direct.send("minlaege-video", video())
    assert len(direct.seen.records[topics.deliver("lps-xmo")]) == 1


@pytest.mark.parametrize("refused", ["unparsable", "unknown-clinic"])
async def test_without_the_dlq_a_refusal_raises_and_the_batch_does_not_commit(
    unique: str, refused: str
) -> None:
    topics = Topics(f"mem-{unique}")
    direct = DirectHarness(topics, missing=[topics.dlq])
    txn = direct.begin()
    value = b"{not json" if refused == "unparsable" else to_bytes(video(UNKNOWN_CLINIC))
    rec = direct.incoming("minlaege-video", value)
    with pytest.raises(KafkaError) as raised:
        await txn.route(rec)
    assert raised.value.retriable
    assert topics.dlq in str(raised.value)
    assert txn.batch.seen == set()
    assert txn.pending == []
    assert len(direct.router.dedup) == 0


# -- a failure inside a rule ---------------------------------------------------------------------


def internal_reason(exc_type: type[BaseException]) -> bytes:
    return f"the router failed on this record ({exc_type.__name__})".encode()


def assert_internal(routed: Routed, topics: Topics, exc_type: type[BaseException], rec: Incoming) -> None:
    assert (routed.verdict, routed.stage) == ("rejected", "internal")
    headers = dead_letter_headers(routed, topics)
    assert headers[h.ERROR_STAGE] == b"internal"
    # The type only: the exception's message may quote the record.
    assert headers[h.ERROR_REASON] == internal_reason(exc_type)
    assert headers[h.ORIGINAL_OFFSET] == str(rec.offset).encode()
    [dead] = [o for o in routed.outputs if o.topic == topics.dlq]
    assert (dead.key, dead.value) == (rec.key, rec.value)


def raising_tenants() -> Tenants:
    raise RuntimeError(SECRET)


class BrokenDirectory(DirectoryTable):
    def get(self, key: str) -> DirectoryEntry | None:
        raise RuntimeError(SECRET)


async def test_a_tenants_source_that_raises_makes_an_internal_dead_letter(unique: str) -> None:
    topics = Topics(f"mem-{unique}")
    direct = DirectHarness(topics, tenants=raising_tenants)
    message = video()
    rec = direct.record_of("minlaege-video", message)
    with direct.transaction() as txn:
        routed = await txn.route(rec)
    assert_internal(routed, topics, RuntimeError, rec)
    # The ingress topic names the sender: it learns its message was not routed.
    [receipt] = direct.receipts("minlaege-video")
    assert receipt.data.outcome is Outcome.REJECTED
    assert receipt.data.message_id == message.id
    assert receipt.data.reason == internal_reason(RuntimeError).decode()
    assert not contains_cpr(receipt.data.reason)


async def test_a_directory_that_raises_makes_an_internal_dead_letter_and_rolls_back(
    direct: DirectHarness,
) -> None:
    direct.router.directory = BrokenDirectory()
    message = video()
    rec = direct.record_of("minlaege-video", message)
    with direct.transaction() as txn:
        routed = await txn.route(rec)
        assert txn.batch.seen == set()
    assert_internal(routed, direct.topics, RuntimeError, rec)
    assert [r.data.outcome for r in direct.receipts("minlaege-video")] == [Outcome.REJECTED]
    assert not direct.seen.records[direct.topics.deliver("lps-xmo")]
    assert len(direct.router.dedup) == 0


async def test_a_catch_up_that_fails_inside_makes_an_internal_dead_letter_and_routing_goes_on(
    unique: str,
) -> None:
    async def divide() -> None:
        _ = 1 / 0

    topics = Topics(f"mem-{unique}")
    direct = DirectHarness(topics, catch_up_directory=divide)
    message = video(UNKNOWN_CLINIC)
    rec = direct.record_of("minlaege-video", message)
    with direct.transaction() as txn:
        routed = await txn.route(rec)
        after = await txn.send("minlaege-video", video(CLINIC))
    assert_internal(routed, topics, ZeroDivisionError, rec)
    assert direct.receipts("minlaege-video")[0].data.reason == internal_reason(ZeroDivisionError).decode()
    assert after.verdict == "routed"
    assert len(direct.seen.records[topics.deliver("lps-xmo")]) == 1


async def test_a_failure_after_staging_a_task_rolls_back_the_task_and_the_dedup_entry(
    direct: DirectHarness,
) -> None:
    topics = direct.topics

    def exists(topic: str) -> bool:
        if topic == topics.tasks:
            raise RuntimeError(SECRET)
        return topic in direct.existing

    batch = Batch(topic_exists=exists)
    request = request_for()
    rec = direct.record_of("kommune-0101", request)
    routed = await direct.router.route(rec, batch)
    assert_internal(routed, topics, RuntimeError, rec)
    assert batch.tasks == {}
    assert batch.seen == set()
    assert [r.data.outcome for r in receipts_in(routed, topics.replies("kommune-0101"))] == [Outcome.REJECTED]


def broken_topic_exists(_topic: str) -> bool:
    raise RuntimeError(SECRET)


async def test_when_even_the_refusal_fails_the_dead_letter_alone_is_written(direct: DirectHarness) -> None:
    rec = direct.record_of("minlaege-video", video())
    routed = await direct.router.route(rec, Batch(topic_exists=broken_topic_exists))
    assert routed.verdict == "rejected"
    assert [o.topic for o in routed.outputs] == [direct.topics.dlq]
    headers_out = dead_letter_headers(routed, direct.topics)
    assert headers_out[h.ERROR_STAGE] == b"internal"
    assert headers_out[h.ERROR_REASON] == internal_reason(RuntimeError)
    assert (routed.outputs[0].key, routed.outputs[0].value) == (rec.key, rec.value)


async def test_when_even_the_refusal_fails_the_verdict_still_names_stage_internal(
    direct: DirectHarness,
) -> None:
    rec = direct.record_of("minlaege-video", video())
    routed = await direct.router.route(rec, Batch(topic_exists=broken_topic_exists))
    assert routed.verdict == "rejected"
    assert dead_letter_headers(routed, direct.topics)[h.ERROR_STAGE] == b"internal"
    # Whoever counts verdicts by stage (the hostile tests, metrics) must see what the letter says.
    assert routed.stage == "internal"


async def test_an_internal_failure_on_a_stranger_topic_writes_no_receipt(direct: DirectHarness) -> None:
    direct.router._tenants = raising_tenants
    rec = Incoming(direct.topics.ingress("stranger"), 0, 4, None, to_bytes(video()))
    with direct.transaction() as txn:
        routed = await txn.route(rec)
    assert_internal(routed, direct.topics, RuntimeError, rec)
    assert [o.topic for o in routed.outputs] == [direct.topics.dlq]


@pytest.mark.parametrize("table", ["directory", "tasks"])
async def test_a_kafka_failure_while_catching_up_propagates_and_nothing_commits(
    unique: str, table: str
) -> None:
    async def unreachable() -> None:
        msg = "coordinator not available"
        raise KafkaError(msg, retriable=True)

    topics = Topics(f"mem-{unique}")
    if table == "directory":
        direct = DirectHarness(topics, catch_up_directory=unreachable)
        tenant, message = "minlaege-video", video(UNKNOWN_CLINIC)
    else:
        direct = DirectHarness(topics, catch_up_tasks=unreachable)
        tenant, message = "lps-xmo", build.task_status("lps-xmo", uuid.uuid4(), "received")
    txn = direct.begin()
    with pytest.raises(KafkaError, match="coordinator not available"):
        await txn.send(tenant, message)
    assert txn.batch.seen == set()
    assert txn.pending == []
    assert not direct.seen.records[topics.dlq]


async def test_the_harness_refuses_an_output_to_a_topic_the_batch_lacks(unique: str) -> None:
    """The direct harness itself: it would catch a router that writes where its snapshot says nothing is."""
    topics = Topics(f"mem-{unique}")
    direct = DirectHarness(topics, missing=[topics.deliver("lps-xmo")])
    txn = direct.begin()
    txn.batch = Batch()  # a batch that believes every topic exists
    with pytest.raises(MissingTopicError):
        await txn.route(direct.incoming("minlaege-video", to_bytes(video())))


async def test_a_task_state_survives_a_clock_that_steps_back(unique: str) -> None:
    """The request and its status reach different ingress partitions, often different router instances.

    The instance that routes the status may run a second behind the one that routed
    the request (or NTP stepped its clock back): the tasks topic still holds
    `requested` then `received`, and every table reading it must end at `received`.
    """
    now = [datetime.now(UTC)]
    direct = DirectHarness(Topics(f"mem-{unique}"), clock=lambda: now[0])
    request = request_for()
    key = task_key(request)
    await direct.send("kommune-0101", request)
    now[0] -= timedelta(seconds=1)
    await direct.send("lps-xmo", build.task_status("lps-xmo", request.data.task_id, "received"))
    committed = direct.router.tasks.get(key)
    assert committed is not None
    assert committed.status == "received"
    written = direct.seen.records[direct.topics.tasks]
    assert [TaskRecord.model_validate_json(r.value or b"").status for r in written] == [
        "requested",
        "received",
    ]

    # A fresh instance loads the tasks topic; the running one's reader reads it too.
    loaded = TaskTable()
    for table in (loaded, direct.router.tasks):
        for record in written:
            table.apply(record.key, record.value)
    states = [t.status if (t := table.get(key)) else None for table in (loaded, direct.router.tasks)]
    assert states == ["received", "received"]


async def test_a_record_with_neither_key_nor_value_is_dead_lettered_in_a_form_kafka_takes(
    direct: DirectHarness,
) -> None:
    """A tombstone on an ingress topic: its dead letter must still be a record a producer can send."""
    rec = direct.incoming("minlaege-video", None, key=None)
    # The harness raises UnsendableRecordError for an output aiokafka would refuse.
    with direct.transaction() as txn:
        routed = await txn.route(rec)
    assert (routed.verdict, routed.stage) == ("rejected", "parse")
    [dead] = direct.seen.records[direct.topics.dlq]
    assert dead.key is not None or dead.value is not None
    assert direct.receipts("minlaege-video")[0].data.outcome is Outcome.REJECTED


# -- the engine's pipeline: a batch decided while the one before it still commits ---------------


async def test_a_resend_decided_while_the_first_copy_commits_is_a_duplicate(direct: DirectHarness) -> None:
    message = video()
    first = direct.begin()
    assert (await first.send("minlaege-video", message)).verdict == "routed"
    # The first batch's transaction is still open: nothing of it is in the router's window yet.
    assert not dedup_has(direct, "minlaege-video", message)
    second = direct.begin(ahead=first)
    assert (await second.send("minlaege-video", message)).verdict == "duplicate"
    first.commit()
    second.commit()
    assert direct.seen.messages(direct.topics.deliver("lps-xmo")) == [message]


async def test_a_status_decided_while_its_request_commits_sees_the_request(unique: str) -> None:
    catch_up = Calls()
    direct = DirectHarness(Topics(f"mem-{unique}"), catch_up_tasks=catch_up)
    request = request_for()
    key = task_key(request)
    first = direct.begin()
    assert (await first.send("kommune-0101", request)).verdict == "routed"
    second = direct.begin(ahead=first)
    status = build.task_status("lps-xmo", request.data.task_id, "received")
    assert (await second.send("lps-xmo", status)).verdict == "forwarded"
    # Found in the batch ahead: no read of the tasks topic, and no "unknown task".
    assert catch_up.count == 0
    # A second request for the same task, decided behind the first, is refused.
    again = build.task_request("kommune-0101", CLINIC, code="KOL-1", task_id=request.data.task_id)
    assert (await second.send("kommune-0101", again)).verdict == "rejected"
    first.commit()
    second.commit()
    committed = direct.router.tasks.get(key)
    assert committed is not None
    assert (committed.status, committed.version) == ("received", 1)


async def test_what_a_batch_inherits_is_only_what_the_batch_ahead_staged_itself(
    direct: DirectHarness,
) -> None:
    one, two = video(), video()
    first = direct.begin()
    await first.send("minlaege-video", one)
    second = direct.begin(ahead=first)
    await second.send("minlaege-video", two)
    first.commit()
    third = direct.begin(ahead=second)
    # `one` is in the window now; the third batch's overlay holds only what `second` staged,
    # so overlays stay one batch deep instead of growing with every batch.
    assert {key[3] for key in third.batch.ahead.seen} == {two.id}
    assert (await third.send("minlaege-video", one)).verdict == "duplicate"
    assert (await third.send("minlaege-video", two)).verdict == "duplicate"
    second.commit()
    third.commit()
    assert direct.seen.messages(direct.topics.deliver("lps-xmo")) == [one, two]
