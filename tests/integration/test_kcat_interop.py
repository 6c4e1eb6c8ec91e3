"""kcat, the standard Kafka command-line client, reads what prik writes and writes what prik reads."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from contracts import MessageType, Topics, example_messages, parse, to_bytes
from deploy.topics import apply_topics
from prik.settings import KafkaSettings
from prik.tenants import load_tenants
from producers import Publisher, read_records, video_queue_notice

# `make test` installs kcat (the `tools` target): a missing kcat is a failure, not a skip.
pytestmark = pytest.mark.kafka

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "tenants.example.toml"
SOR = "123456789012345"


def _kcat(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    kcat = shutil.which("kcat")
    assert kcat is not None, "kcat is not installed: run `make setup` (Debian's kcat)"
    return subprocess.run([kcat, *args], input=stdin, capture_output=True, timeout=60, check=False)


async def test_kcat_reads_what_prik_wrote(kafka_bootstrap: str, topic_prefix: str) -> None:
    kafka = KafkaSettings(bootstrap=kafka_bootstrap)
    topics = Topics(topic_prefix)
    await apply_topics(kafka, topics, load_tenants(EXAMPLE))
    notice = video_queue_notice("minlaege-video", SOR, event="called", queue_entry_id="q-9", cpr="0101901234")
    async with Publisher(kafka, "minlaege-video", topics) as pub:
        result = await pub.publish(notice)

    done = _kcat("-b", kafka_bootstrap, "-C", "-t", result.topic, "-e", "-J", "-q")
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.decode().strip().splitlines()
    record = json.loads(line)
    assert record["key"] == SOR
    assert (record["partition"], record["offset"]) == (result.partition, result.offset)
    headers = record["headers"]
    assert dict(zip(headers[::2], headers[1::2], strict=True)) == {
        "content-type": "application/cloudevents+json"
    }
    assert parse(record["payload"].encode()) == notice


async def test_prik_reads_a_structured_cloudevent_kcat_produced(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    kafka = KafkaSettings(bootstrap=kafka_bootstrap)
    topics = Topics(topic_prefix)
    await apply_topics(kafka, topics, load_tenants(EXAMPLE))
    message = example_messages()[MessageType.VIDEO_QUEUE]
    topic = topics.ingress("minlaege-video")

    done = _kcat(
        *("-b", kafka_bootstrap, "-P", "-t", topic, "-k", SOR),
        *("-H", "content-type=application/cloudevents+json"),
        stdin=to_bytes(message) + b"\n",
    )
    assert done.returncode == 0, done.stderr

    async with contextlib.aclosing(read_records(kafka, topic)) as records:
        (record,) = [r async for r in records]
    assert record.key == SOR.encode()
    assert dict(record.headers) == {"content-type": b"application/cloudevents+json"}
    assert parse(record.value, record.headers) == message
