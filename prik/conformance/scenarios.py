"""The scenarios: one per rule of DESIGN.md "Webhook delivery", each a few probes. Pure.

A scenario passes when every one of its probes got the answer it expects (2xx
or 4xx, within the timeout). Scenarios judged over the whole run (the answer
time, 410 and 429) are in `summaries`; the task round trip is in `taskapi`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from standardwebhooks.webhooks import Webhook

from consumers.signing import sign_headers
from contracts import MessageType, to_bytes

from .probes import DELIVERED_TYPES, STALE_BY, Expect, Kit, Probe, envelope_with

__all__ = ["SCENARIOS", "Scenario"]

_SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named check of one rule: the probes it sends, built fresh for each run."""

    name: str
    rule: str
    probes: Callable[[Kit], tuple[Probe, ...]]


def _deliver(kind: MessageType) -> Scenario:
    # dk.prik.advisory.video-queue.v1 -> video-queue; dk.prik.task.request.v1 -> task-request
    short = kind.value.removeprefix("dk.prik.").removesuffix(".v1").removeprefix("advisory.")
    short = short.replace(".", "-")
    label = f"a signed {short} message"

    def probes(kit: Kit) -> tuple[Probe, ...]:
        return (kit.signed(label, kit.message(kind)),)

    return Scenario(f"deliver-{short}", f"a valid {kind.value} delivery is answered 2xx in time", probes)


def _wrong_secret(kit: Kit) -> tuple[Probe, ...]:
    message = kit.message(MessageType.VIDEO_QUEUE)
    body = to_bytes(message)
    stranger = kit.stranger()

    def sign(now: datetime) -> dict[str, str]:
        return {**stranger.sign(message.id, body, now), "content-type": "application/json"}

    return (_refused("signed with a secret the endpoint does not have", body, sign),)


def _refused(label: str, body: bytes, sign: Callable[[datetime], dict[str, str]]) -> Probe:
    return Probe(label, body, sign, Expect.REFUSE)


def _missing(header: str) -> Scenario:
    def probes(kit: Kit) -> tuple[Probe, ...]:
        valid = kit.signed("", kit.message(MessageType.VIDEO_QUEUE))

        def sign(now: datetime) -> dict[str, str]:
            headers = valid.sign(now)
            del headers[header]
            return headers

        return (_refused(f"signed, but without the {header} header", valid.body, sign),)

    return Scenario(f"signature-missing-{header}", f"a request without {header} is refused with 4xx", probes)


def _tampered_body(kit: Kit) -> tuple[Probe, ...]:
    message = kit.message(MessageType.VIDEO_QUEUE)
    valid = kit.signed("", message)
    # Still valid JSON and still a valid message: only the signature can tell.
    changed = envelope_with(message, data={"queue_entry_id": "conformance-tampered"})
    return (_refused("signed, then the body changed", changed, valid.sign),)


def _tampered_id(kit: Kit) -> tuple[Probe, ...]:
    valid = kit.signed("", kit.message(MessageType.VIDEO_QUEUE))
    other = str(uuid.uuid4())

    def sign(now: datetime) -> dict[str, str]:
        return {**valid.sign(now), "webhook-id": other}

    return (_refused("signed, then webhook-id changed", valid.body, sign),)


def _shifted(later: bool) -> Callable[[Kit], tuple[Probe, ...]]:
    def probes(kit: Kit) -> tuple[Probe, ...]:
        valid = kit.signed("", kit.message(MessageType.VIDEO_QUEUE))

        def sign(now: datetime) -> dict[str, str]:
            return valid.sign(now + STALE_BY if later else now - STALE_BY)

        when = "ahead" if later else "old"
        minutes = int(STALE_BY.total_seconds() // 60)
        return (_refused(f"correctly signed, timestamp {minutes} minutes {when}", valid.body, sign),)

    return probes


def _rotation(kit: Kit) -> tuple[Probe, ...]:
    def probe(known_first: bool) -> Probe:
        message = kit.message(MessageType.VIDEO_QUEUE)
        valid = kit.signed("", message)
        stranger = kit.stranger()

        def sign(now: datetime) -> dict[str, str]:
            headers = valid.sign(now)
            known = headers["webhook-signature"]
            unknown = stranger.sign(message.id, valid.body, now)["webhook-signature"]
            # Both orders: an endpoint that reads only the first, or only the last, fails one of them.
            headers["webhook-signature"] = f"{known} {unknown}" if known_first else f"{unknown} {known}"
            return headers

        where = "first" if known_first else "second"
        return Probe(f"two signatures, only the {where} by a known secret", valid.body, sign, Expect.ACCEPT)

    return (probe(known_first=False), probe(known_first=True))


def _each_secret(kit: Kit) -> tuple[Probe, ...]:
    """One delivery per secret given, signed with that secret alone: while a secret is rotated,
    prik's consumer may sign with either, and an endpoint that checks only one would refuse."""
    count = len(kit.secrets)

    def probe(number: int, webhook: Webhook) -> Probe:
        message = kit.message(MessageType.VIDEO_QUEUE)
        body = to_bytes(message)

        def sign(now: datetime) -> dict[str, str]:
            return {**sign_headers(webhook, message.id, body, now), "content-type": "application/json"}

        return Probe(f"signed with secret {number} of {count} alone", body, sign, Expect.ACCEPT)

    return tuple(probe(number, webhook) for number, webhook in enumerate(kit.secrets, start=1))


def _duplicate(kit: Kit) -> tuple[Probe, ...]:
    message = kit.message(MessageType.REFERRAL_STATUS)
    first = kit.signed("the first copy", message)
    # A retry: same webhook-id and body, signed again with a fresh timestamp.
    return (first, kit.signed("the same webhook-id again", message))


def _documented_extensions(kit: Kit) -> tuple[Probe, ...]:
    message = kit.message(MessageType.VIDEO_QUEUE).model_copy(
        update={
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "tracestate": "prik=conformance",
            "partitionkey": kit.clinic,
        }
    )
    probe = kit.signed("traceparent, tracestate and partitionkey set", message)
    trace = message.traceparent or ""
    state = message.tracestate or ""

    def sign(now: datetime) -> dict[str, str]:
        # The consumer also passes the trace on as W3C headers.
        return {**probe.sign(now), "traceparent": trace, "tracestate": state}

    return (Probe(probe.label, probe.body, sign, Expect.ACCEPT),)


def _unknown_attribute(kit: Kit) -> tuple[Probe, ...]:
    message = kit.message(MessageType.REFERRAL_STATUS)
    body = envelope_with(message, prikfuture="a later version's attribute")
    return (kit.signed_body("an envelope attribute this version does not define", message.id, body),)


def _unknown_field(kit: Kit) -> tuple[Probe, ...]:
    message = kit.message(MessageType.VIDEO_QUEUE)
    body = envelope_with(message, data={"room_language": "da"})
    return (kit.signed_body("a data field this version does not define", message.id, body),)


SCENARIOS: tuple[Scenario, ...] = (
    *(_deliver(kind) for kind in DELIVERED_TYPES),
    Scenario(
        "signature-wrong-secret",
        "a signature by another secret is refused with 4xx",
        _wrong_secret,
    ),
    *(_missing(header) for header in _SIGNATURE_HEADERS),
    Scenario("signature-tampered-body", "a body changed after signing is refused with 4xx", _tampered_body),
    Scenario("signature-tampered-id", "a webhook-id changed after signing is refused with 4xx", _tampered_id),
    Scenario(
        "signature-stale-timestamp",
        "a timestamp more than 5 minutes old is refused with 4xx",
        _shifted(later=False),
    ),
    Scenario(
        "signature-future-timestamp",
        "a timestamp more than 5 minutes ahead is refused with 4xx",
        _shifted(later=True),
    ),
    Scenario(
        "signature-rotation",
        "several signatures (secret rotation): one valid is enough, answered 2xx",
        _rotation,
    ),
    Scenario(
        "signature-each-secret",
        "each secret given (--secret repeated while rotating) is accepted on its own, answered 2xx",
        _each_secret,
    ),
    Scenario(
        "duplicate-webhook-id",
        "a repeated webhook-id is answered 2xx again (the duplicate dropped, not an error)",
        _duplicate,
    ),
    Scenario(
        "extension-documented",
        "the documented extensions traceparent, tracestate, partitionkey are tolerated (2xx)",
        _documented_extensions,
    ),
    Scenario("extension-unknown", "an unknown envelope attribute is tolerated (2xx)", _unknown_attribute),
    Scenario("field-unknown", "an unknown field in data is tolerated (2xx)", _unknown_field),
)
