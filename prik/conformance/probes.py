"""What a conformance run sends: real prik messages of every type an LPS receives, signed or not.

Pure: a `Probe` is a body and a way to sign it at a given moment, built from the
sender SDK's builders (`producers`) exactly as a consumer would deliver them. The
signing goes through the consumer's own signer (`consumers.signing`), so a probe
that should verify is byte for byte what `prik consumer run` would send.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from consumers.signing import WebhookSecrets, generate_secret
from contracts import Message, MessageType, TaskRequest, codec, to_bytes
from contracts.examples import EXAMPLE_CPR
from producers import referral_status_notice, task_request, task_status, video_queue_notice

__all__ = [
    "DELIVERED_TYPES",
    "STALE_BY",
    "Expect",
    "Kit",
    "Probe",
    "Signer",
    "sample_message",
]

# What the router writes to an LPS's delivery topic. Receipts go to a sender's
# replies topic, never to a webhook, so an LPS endpoint is not asked to take one.
DELIVERED_TYPES = (
    MessageType.VIDEO_QUEUE,
    MessageType.REFERRAL_STATUS,
    MessageType.TASK_REQUEST,
    MessageType.TASK_STATUS,
)

# Standard Webhooks receivers refuse a timestamp more than 5 minutes off; one
# more minute leaves room for the two clocks to disagree a little.
STALE_BY = timedelta(minutes=6)

_VIDEO_SENDER = "minlaege-video"
_MUNICIPALITY = "kommune-0101"

Signer = Callable[[datetime], dict[str, str]]


class Expect(StrEnum):
    """What a conforming endpoint answers a probe."""

    ACCEPT = "2xx"
    REFUSE = "4xx"


@dataclass(frozen=True, slots=True)
class Probe:
    """One request: `body` POSTed with the headers `sign(now)` gives (called again on each retry)."""

    label: str
    body: bytes
    sign: Signer
    expect: Expect
    # The task a delivered task request asks for: the LPS may answer it (the round trip's stand-in).
    task_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class Kit:
    """What building probes needs: the endpoint's secrets and the clinic the messages are for."""

    secrets: WebhookSecrets
    clinic: str

    def message(self, kind: MessageType, task_id: uuid.UUID | None = None) -> Message:
        return sample_message(kind, self.clinic, task_id)

    def signed(self, label: str, message: Message, *, expect: Expect = Expect.ACCEPT) -> Probe:
        """`message` as the consumer delivers it: its canonical bytes, signed with every secret."""
        probe = self.signed_body(label, message.id, to_bytes(message), expect=expect)
        if isinstance(message, TaskRequest):
            return replace(probe, task_id=message.data.task_id)
        return probe

    def signed_body(self, label: str, msg_id: str, body: bytes, *, expect: Expect = Expect.ACCEPT) -> Probe:
        secrets = self.secrets

        def sign(now: datetime) -> dict[str, str]:
            return _with_type(secrets.sign(msg_id, body, now))

        return Probe(label, body, sign, expect)

    def stranger(self) -> WebhookSecrets:
        """A secret the endpoint cannot know."""
        return WebhookSecrets(generate_secret())


def _with_type(headers: dict[str, str]) -> dict[str, str]:
    headers["content-type"] = "application/json"
    return headers


def sample_message(kind: MessageType, clinic: str, task_id: uuid.UUID | None = None) -> Message:
    """A fresh message of `kind` for `clinic` (new id, current time), as the router delivers it.

    The CPR is the made-up example of `contracts.examples` (valid date, fails modulus 11).
    """
    task = task_id or uuid.uuid4()
    if kind is MessageType.VIDEO_QUEUE:
        return video_queue_notice(
            _VIDEO_SENDER,
            clinic,
            event="joined",
            queue_entry_id="conformance-queue-1",
            position=1,
            consultation_url="https://video.example.dk/room/conformance",
            cpr=EXAMPLE_CPR,
        )
    if kind is MessageType.REFERRAL_STATUS:
        return referral_status_notice(
            _MUNICIPALITY,
            clinic,
            referral_id="conformance-referral-1",
            municipality_code="101",
            offer="TeleKOL",
            status="accepted",
            cpr=EXAMPLE_CPR,
        )
    if kind is MessageType.TASK_REQUEST:
        return task_request(
            _MUNICIPALITY,
            clinic,
            code="medication-review",
            description="Conformance check: please answer this task.",
            cpr=EXAMPLE_CPR,
            task_id=task,
        )
    if kind is MessageType.TASK_STATUS:
        # The requester cancels; the router addresses it to the task's clinic before delivering.
        update = task_status(_MUNICIPALITY, task, "cancelled", reason="Conformance check: cancelled")
        return update.model_copy(update={"recipient": clinic})
    msg = f"an LPS endpoint never receives {kind.value}"
    raise ValueError(msg)


def envelope_with(message: Message, data: dict[str, Any] | None = None, **changes: Any) -> bytes:  # noqa: ANN401  any JSON value
    """`message`'s canonical JSON with attributes (`changes`) and fields of `data` added or replaced.

    Not validated: this is how a later version's message could look to this one.
    """
    envelope = codec.loads(to_bytes(message))
    assert isinstance(envelope, dict)  # noqa: S101  to_bytes always writes an object
    envelope.update(changes)
    if data:
        envelope["data"] = {**envelope["data"], **data}
    return codec.dumps(envelope)
