"""`prik send ...`, `prik task status` and `prik replies` as subprocesses against a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from contracts import (
    Message,
    MessageType,
    ReferralStatusNotice,
    TaskRequest,
    TaskStatusUpdate,
    Topics,
    VideoQueueNotice,
    example_messages,
    parse,
    to_bytes,
)
from deploy.topics import apply_topics
from prik.kafka import make_producer
from prik.settings import KafkaSettings
from prik.tenants import load_tenants
from producers import read_records, receipt, task_status

pytestmark = pytest.mark.kafka

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "tenants.example.toml"
SOR = "123456789012345"
CPR = "0101901234"
SENT_RE = re.compile(r"^(?P<id>\S+) (?P<topic>\S+)\[(?P<partition>\d+)\]@(?P<offset>\d+)$", re.MULTILINE)


@pytest.fixture
async def env(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> dict[str, str]:
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    await apply_topics(KafkaSettings(bootstrap=kafka_bootstrap), Topics(topic_prefix), load_tenants(tenants))
    return {
        **os.environ,
        "PRIK_KAFKA__BOOTSTRAP": kafka_bootstrap,
        "PRIK_TOPIC_PREFIX": topic_prefix,
        "PRIK_TENANTS": str(tenants),
        "PRIK_LOG_LEVEL": "warning",
    }


def _prik(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prik", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _landed(kafka_bootstrap: str, stdout: str) -> tuple[str, bytes | None, Message]:
    """The record a send printed as `<id> topic[partition]@offset`, read back from Kafka."""
    match = SENT_RE.search(stdout)
    assert match, stdout
    kafka = KafkaSettings(bootstrap=kafka_bootstrap)
    # aclosing: leaving the loop early must still stop the reader's consumer.
    async with contextlib.aclosing(read_records(kafka, match["topic"])) as records:
        async for record in records:
            if record.partition == int(match["partition"]) and record.offset == int(match["offset"]):
                message = parse(record.value, record.headers)
                assert message.id == match["id"]
                return match["topic"], record.key, message
    pytest.fail(f"nothing at {match[0]}")


async def test_send_video_queue_lands_on_the_senders_ingress_topic(
    env: dict[str, str], kafka_bootstrap: str, topic_prefix: str
) -> None:
    done = _prik(
        env,
        *("send", "video-queue", "--as", "minlaege-video", "--clinic", SOR, "--event", "joined"),
        *("--queue-entry", "q-4711", "--position", "3", "--cpr", CPR),
        *("--url", "https://video.example.dk/room/4711", "--expires-in", "15m", "--urgent"),
    )
    assert done.returncode == 0, done.stderr
    assert CPR not in done.stdout + done.stderr
    topic, key, message = await _landed(kafka_bootstrap, done.stdout)
    assert topic == f"{topic_prefix}.ingress.minlaege-video"
    assert key == SOR.encode()
    assert isinstance(message, VideoQueueNotice)
    assert message.data.patient is not None
    assert message.data.patient.cpr.value == CPR
    assert message.data.position == 3
    assert message.priority == "urgent"
    assert message.expiresat is not None
    assert message.expiresat - message.time == datetime.timedelta(minutes=15)


async def test_send_referral_status_and_task_then_task_status(
    env: dict[str, str], kafka_bootstrap: str, topic_prefix: str
) -> None:
    referral = _prik(
        env,
        *("send", "referral-status", "--as", "kommune-0101", "--clinic", SOR, "--referral", "ref-1"),
        *("--municipality", "101", "--offer", "TeleKOL", "--status", "accepted", "--cpr", CPR),
    )
    assert referral.returncode == 0, referral.stderr
    topic, key, message = await _landed(kafka_bootstrap, referral.stdout)
    assert (topic, key) == (f"{topic_prefix}.ingress.kommune-0101", SOR.encode())
    assert isinstance(message, ReferralStatusNotice)

    task = _prik(
        env, "send", "task", "--as", "kommune-0101", "--clinic", SOR, "--code", "med-review", "--due", "2d"
    )
    assert task.returncode == 0, task.stderr
    task_id = re.search(r"^task (\S+)$", task.stdout, re.MULTILINE)
    assert task_id
    _, key, request = await _landed(kafka_bootstrap, task.stdout)
    assert isinstance(request, TaskRequest)
    assert str(request.data.task_id) == task_id[1]
    assert request.data.due is not None

    answer = _prik(env, "task", "status", task_id[1], "--as", "lps-xmo", "--status", "accepted")
    assert answer.returncode == 0, answer.stderr
    topic, key, status = await _landed(kafka_bootstrap, answer.stdout)
    assert topic == f"{topic_prefix}.ingress.lps-xmo"
    assert key == task_id[1].encode()
    assert isinstance(status, TaskStatusUpdate)
    assert status.data.status == "accepted"


async def test_send_raw_publishes_the_file_bytes_and_refuses_invalid_files(
    env: dict[str, str], kafka_bootstrap: str, tmp_path: Path
) -> None:
    good = tmp_path / "notice.json"
    value = to_bytes(example_messages()[MessageType.VIDEO_QUEUE])
    good.write_bytes(value)
    sent = _prik(env, "send", "raw", "--as", "minlaege-video", str(good))
    assert sent.returncode == 0, sent.stderr
    _, key, message = await _landed(kafka_bootstrap, sent.stdout)
    assert message == example_messages()[MessageType.VIDEO_QUEUE]
    assert key == SOR.encode()

    bad = tmp_path / "bad.json"
    bad.write_bytes(value.replace(b'"joined"', b'"sneezed"'))
    refused = _prik(env, "send", "raw", "--as", "minlaege-video", str(bad))
    assert refused.returncode == 1
    assert refused.stderr.startswith("prik: error: data.event")
    assert len(refused.stderr.strip().splitlines()) == 1
    assert CPR not in refused.stderr

    other = _prik(env, "send", "raw", "--as", "kommune-0101", str(good))
    assert other.returncode == 2
    assert "urn:prik:kommune-0101" in other.stderr


async def test_usage_and_authorisation_errors_are_one_line(env: dict[str, str]) -> None:
    not_allowed = _prik(env, "send", "task", "--as", "minlaege-video", "--clinic", SOR, "--code", "c")
    assert not_allowed.returncode == 1
    assert (
        not_allowed.stderr.strip()
        == "prik: error: tenant minlaege-video may not send dk.prik.task.request.v1"
    )

    bad_cpr = _prik(
        env, "send", "video-queue", "--as", "minlaege-video", "--clinic", SOR, "--event", "joined",
        "--queue-entry", "q", "--cpr", "3213213213",
    )  # fmt: skip
    assert bad_cpr.returncode == 1
    assert "3213213213" not in bad_cpr.stderr
    assert "patient.cpr" in bad_cpr.stderr

    bad_duration = _prik(
        env, "send", "video-queue", "--as", "minlaege-video", "--clinic", SOR, "--event", "joined",
        "--queue-entry", "q", "--expires-in", "15 minutes",
    )  # fmt: skip
    assert bad_duration.returncode == 2
    assert "90s, 15m, 2h" in bad_duration.stderr


async def test_replies_prints_receipts_and_task_statuses_without_cpr(
    env: dict[str, str], kafka_bootstrap: str, topic_prefix: str
) -> None:
    kafka = KafkaSettings(bootstrap=kafka_bootstrap)
    topics = Topics(topic_prefix)
    task_id = uuid.uuid4()
    answer = receipt(
        "lps-xmo",
        message_id="m-1",
        message_source="urn:prik:kommune-0101",
        message_type="dk.prik.task.request.v1",
        outcome="dead-lettered",
        reason=f"unknown patient {CPR}",
    )
    status = task_status("lps-xmo", task_id, "in-progress")
    # Written the way the router writes: in a transaction, read back read_committed.
    producer = make_producer(kafka, transactional_id=f"test-{uuid.uuid4()}")
    await producer.start()
    try:
        async with producer.transaction():
            for message in (answer, status):
                await producer.send(topics.replies("kommune-0101"), to_bytes(message), key=b"k")
    finally:
        await producer.stop()

    shown = _prik(env, "replies", "--as", "kommune-0101")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.strip().splitlines()
    assert len(lines) == 2
    assert "dk.prik.receipt.v1 message_id=m-1 outcome=dead-lettered" in lines[0]
    assert f"dk.prik.task.status.v1 task_id={task_id} status=in-progress" in lines[1]
    assert CPR not in shown.stdout + shown.stderr

    empty = _prik(env, "replies", "--as", "minlaege-video")
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout == ""


async def test_replies_follow_prints_new_replies_until_interrupted(
    env: dict[str, str], kafka_bootstrap: str, topic_prefix: str
) -> None:
    kafka = KafkaSettings(bootstrap=kafka_bootstrap)
    status = task_status("lps-xmo", uuid.uuid4(), "received")
    with subprocess.Popen(  # noqa: ASYNC220 - the child runs alongside the test, which talks to it
        [sys.executable, "-m", "prik", "replies", "--as", "kommune-0101", "--follow"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as follower:
        assert follower.stdout is not None
        try:
            await asyncio.sleep(3)  # let it reach the (empty) end of the topic first
            producer = make_producer(kafka)
            await producer.start()
            try:
                await producer.send_and_wait(Topics(topic_prefix).replies("kommune-0101"), to_bytes(status))
            finally:
                await producer.stop()
            line = await asyncio.wait_for(asyncio.to_thread(follower.stdout.readline), 60)
            assert f"task_id={status.data.task_id} status=received" in line
        finally:
            follower.send_signal(signal.SIGINT)
            follower.wait(30)
    assert follower.returncode == 130
