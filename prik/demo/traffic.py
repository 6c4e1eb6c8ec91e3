"""The senders: a video-consultation platform and three municipalities, at a steady rate.

Traffic is realistic in shape, not in volume: video-queue entries join, are
called and leave; referrals move through their statuses; municipalities hand
clinics tasks. A small share is invalid on purpose (an unknown clinic, a type
the sender may not send, a broken envelope, malformed JSON, a status for an
unknown task), and a few notices are already expired when sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer

from contracts import (
    STRUCTURED_CONTENT_TYPE,
    KafkaError,
    Message,
    ParseError,
    ReferralStatus,
    TaskRequest,
    Topics,
    VideoQueueEvent,
    codec,
    source_of,
    to_bytes,
)
from contracts.headers import CONTENT_TYPE
from prik.kafka import kafka_errors, make_producer
from prik.logs import get_logger
from prik.settings import KafkaSettings
from producers import Publisher, referral_status_notice, task_request, task_status, video_queue_notice

from .cast import MUNICIPALITIES, VIDEO_PLATFORM, Cast, Municipality
from .tally import MALFORMED_ROW, Tally, row_of

__all__ = ["FAILING_CLINIC_RATE", "Traffic"]

_log = get_logger("prik.demo")

# Messages per second aimed at the failing clinic on top of the main traffic, so
# its outage shows as expiries and dead letters rather than one or two stragglers.
FAILING_CLINIC_RATE = 2.0
# Publishes not yet acknowledged; past this the senders wait instead of piling up.
_MAX_IN_FLIGHT = 2000
_TICK = 0.02
_SHORT_EXPIRY = timedelta(seconds=2)

_OFFERS = ("TeleKOL", "TeleHjerte", "Rehabilitering", "Hjemmesygepleje", "Forebyggelsessamtale")
_TASK_CODES = {
    "medicingennemgang": "Medicingennemgang før udskrivelse fra kommunal akutplads",
    "blodproeve": "Blodprøve tages i hjemmet; svar ønskes vurderet",
    "kol-opfoelgning": "Opfølgning efter TeleKOL-forløb",
    "sygeplejefaglig-vurdering": "Hjemmesygeplejen beder om lægelig vurdering",
}
_REFERRAL_NEXT = {
    ReferralStatus.RECEIVED: (ReferralStatus.ACCEPTED, ReferralStatus.REJECTED),
    ReferralStatus.ACCEPTED: (ReferralStatus.STARTED, ReferralStatus.CANCELLED),
    ReferralStatus.STARTED: (ReferralStatus.COMPLETED,),
}
_INVALID_KINDS = ("unknown-clinic", "forbidden-type", "bad-envelope", "malformed-json", "unknown-task")


@dataclass(slots=True)
class _QueueEntry:
    entry_id: str
    clinic: str
    cpr: str
    since: datetime


@dataclass(slots=True)
class _Referral:
    referral_id: str
    clinic: str
    offer: str
    cpr: str
    status: ReferralStatus


@dataclass(slots=True)
class _State:
    waiting: list[_QueueEntry] = field(default_factory=list)
    in_call: list[_QueueEntry] = field(default_factory=list)
    referrals: dict[str, list[_Referral]] = field(default_factory=dict)
    invalid_turn: int = 0


class Traffic:
    """Publishes the senders' traffic and registers every message with the tally before it leaves."""

    def __init__(
        self,
        kafka: Callable[[str], KafkaSettings],
        topics: Topics,
        cast: Cast,
        tally: Tally,
        *,
        rate: float,
        failing_clinic: str,
        seed: int | None = None,
    ) -> None:
        self._kafka = kafka
        self._topics = topics
        self._cast = cast
        self._tally = tally
        self._rate = rate
        self._failing = failing_clinic
        self._rng = random.Random(seed)  # noqa: S311  traffic shapes, not secrets
        self._state = _State(referrals={m.tenant: [] for m in MUNICIPALITIES})
        self._publishers: dict[str, Publisher] = {}
        # One raw producer per sender: in secure mode each may write its own ingress topic only.
        self._raw: dict[str, AIOKafkaProducer] = {}
        self._in_flight: set[asyncio.Task[None]] = set()
        self._healthy = [c.sor for c in cast.clinics if c.sor != failing_clinic]
        self._known = frozenset(c.sor for c in cast.clinics)
        self.errors = 0

    async def start(self) -> None:
        for tenant in (VIDEO_PLATFORM, *(m.tenant for m in MUNICIPALITIES)):
            kafka = self._kafka(tenant)
            publisher = Publisher(kafka, tenant, self._topics)
            await publisher.start()
            self._publishers[tenant] = publisher
            raw = make_producer(kafka, client_id="prik-demo-raw")
            try:
                with kafka_errors(f"connecting to Kafka at {kafka.bootstrap}"):
                    await raw.start()
            except BaseException:
                await raw.stop()
                raise
            self._raw[tenant] = raw

    async def stop(self) -> None:
        """Wait for the publishes in flight, then close every producer."""
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        for publisher in self._publishers.values():
            await publisher.stop()
        self._publishers.clear()
        raws, self._raw = self._raw, {}
        for raw in raws.values():
            await raw.stop()

    async def run(self, seconds: float, stop: asyncio.Event) -> None:
        """Send for `seconds` (or until `stop`), keeping the rate by catching up every tick."""
        started = time.monotonic()
        made = failing_made = 0
        while not stop.is_set():
            elapsed = time.monotonic() - started
            if elapsed >= seconds:
                break
            if len(self._in_flight) < _MAX_IN_FLIGHT:
                for _ in range(int(elapsed * self._rate) - made):
                    self._emit_one()
                    made += 1
                for _ in range(int(elapsed * FAILING_CLINIC_RATE) - failing_made):
                    self._emit_to_failing_clinic(failing_made)
                    failing_made += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _TICK)

    # -- choosing a message ---------------------------------------------------------------

    def _emit_one(self) -> None:
        roll = self._rng.random()
        if roll < 0.50:
            self._video(self._rng.choice(self._healthy))
        elif roll < 0.80:
            self._referral(self._rng.choice(MUNICIPALITIES), self._rng.choice(self._healthy))
        elif roll < 0.94:
            self._task(self._rng.choice(MUNICIPALITIES), self._rng.choice(self._healthy))
        elif roll < 0.96:
            self._already_expired()
        else:
            self._invalid()

    def _emit_to_failing_clinic(self, n: int) -> None:
        # "Called" notices are worthless after a moment; referral news is not.
        if n % 2 == 0:
            entry = self._new_entry(self._failing)
            message: Message = video_queue_notice(
                VIDEO_PLATFORM,
                self._failing,
                event=VideoQueueEvent.CALLED,
                queue_entry_id=entry.entry_id,
                position=1,
                waiting_since=entry.since,
                cpr=entry.cpr,
                expires_in=_SHORT_EXPIRY,
                consultation_url=f"https://video.minlaege.dk/r/{entry.entry_id}",
            )
            self._publish(VIDEO_PLATFORM, message)
        else:
            self._referral(self._rng.choice(MUNICIPALITIES), self._failing, fresh=True)

    # -- the kinds of traffic ---------------------------------------------------------------

    def _cpr(self) -> str:
        # Shaped like a CPR number (valid day and month); made up, never logged.
        rng = self._rng
        birth = f"{rng.randint(1, 28):02d}{rng.randint(1, 12):02d}{rng.randint(0, 99):02d}"
        return f"{birth}{rng.randint(0, 9999):04d}"

    def _new_entry(self, clinic: str) -> _QueueEntry:
        since = datetime.now(UTC) - timedelta(seconds=self._rng.randint(0, 120))
        return _QueueEntry(f"vq-{uuid.uuid4().hex[:12]}", clinic, self._cpr(), since)

    def _video(self, clinic: str) -> None:
        state, rng = self._state, self._rng
        roll = rng.random()
        if roll < 0.45 or not state.waiting:
            entry = self._new_entry(clinic)
            state.waiting.append(entry)
            event, position = VideoQueueEvent.JOINED, rng.randint(1, 6)
        elif roll < 0.75 or not state.in_call:
            entry = state.waiting.pop(rng.randrange(len(state.waiting)))
            state.in_call.append(entry)
            event, position = VideoQueueEvent.CALLED, 1
        else:
            entry = state.in_call.pop(rng.randrange(len(state.in_call)))
            event, position = VideoQueueEvent.LEFT, None
        message = video_queue_notice(
            VIDEO_PLATFORM,
            entry.clinic,
            event=event,
            queue_entry_id=entry.entry_id,
            position=position,
            waiting_since=entry.since,
            cpr=entry.cpr,
            consultation_url=f"https://video.minlaege.dk/r/{entry.entry_id}",
        )
        self._publish(VIDEO_PLATFORM, message)

    def _referral(self, municipality: Municipality, clinic: str, *, fresh: bool = False) -> None:
        ongoing = self._state.referrals[municipality.tenant]
        if fresh or len(ongoing) < 10 or self._rng.random() < 0.4:
            referral = _Referral(
                f"ref-{municipality.code}-{uuid.uuid4().hex[:10]}",
                clinic,
                self._rng.choice(_OFFERS),
                self._cpr(),
                ReferralStatus.RECEIVED,
            )
            if not fresh:
                ongoing.append(referral)
        else:
            referral = ongoing[self._rng.randrange(len(ongoing))]
            referral.status = self._rng.choice(_REFERRAL_NEXT[referral.status])
            if referral.status not in _REFERRAL_NEXT:
                ongoing.remove(referral)
        message = referral_status_notice(
            municipality.tenant,
            referral.clinic,
            referral_id=referral.referral_id,
            municipality_code=municipality.code,
            offer=referral.offer,
            status=referral.status,
            cpr=referral.cpr,
            reason="Borgeren har takket nej" if referral.status is ReferralStatus.CANCELLED else None,
        )
        self._publish(municipality.tenant, message)

    def _task(self, municipality: Municipality, clinic: str) -> None:
        code = self._rng.choice(list(_TASK_CODES))
        message = task_request(
            municipality.tenant,
            clinic,
            code=code,
            description=_TASK_CODES[code],
            cpr=self._cpr(),
            due=datetime.now(UTC) + timedelta(days=self._rng.randint(1, 14)),
        )
        self._publish(municipality.tenant, message, task_id=str(message.data.task_id))

    def _already_expired(self) -> None:
        # A queue notice held up at the platform: stale before prik ever sees it.
        entry = self._new_entry(self._rng.choice(self._healthy))
        message = video_queue_notice(
            VIDEO_PLATFORM,
            entry.clinic,
            event=VideoQueueEvent.LEFT,
            queue_entry_id=entry.entry_id,
            waiting_since=entry.since,
            expires_in=timedelta(seconds=-30),
        )
        self._publish(VIDEO_PLATFORM, message)

    def _invalid(self) -> None:
        state = self._state
        kind = _INVALID_KINDS[state.invalid_turn % len(_INVALID_KINDS)]
        state.invalid_turn += 1
        clinic = self._rng.choice(self._healthy)
        municipality = self._rng.choice(MUNICIPALITIES)
        if kind == "unknown-clinic":
            entry = self._new_entry(self._cast.unknown_clinic)
            self._publish(
                VIDEO_PLATFORM,
                video_queue_notice(
                    VIDEO_PLATFORM, entry.clinic, event="joined", queue_entry_id=entry.entry_id
                ),
            )
        elif kind == "forbidden-type":
            # The video platform may only send video-queue notices.
            self._publish(
                VIDEO_PLATFORM,
                referral_status_notice(
                    VIDEO_PLATFORM,
                    clinic,
                    referral_id=f"ref-x-{uuid.uuid4().hex[:8]}",
                    municipality_code=municipality.code,
                    offer="TeleKOL",
                    status="received",
                    cpr=self._cpr(),
                ),
            )
        elif kind == "bad-envelope":
            good = video_queue_notice(VIDEO_PLATFORM, clinic, event="joined", queue_entry_id="vq-bad")
            broken = codec.loads(to_bytes(good))
            broken["recipient"] = "4711"  # a SOR code has 11-18 digits
            self._publish_raw(VIDEO_PLATFORM, codec.dumps(broken), row_of(good.type), message_id=good.id)
        elif kind == "malformed-json":
            self._publish_raw(municipality.tenant, b'{"specversion": "1.0", "id": "cut-off', MALFORMED_ROW)
        else:
            self._publish(municipality.tenant, task_status(municipality.tenant, uuid.uuid4(), "cancelled"))

    # -- publishing ---------------------------------------------------------------------------

    def _spawn(self, work: Callable[[], Any]) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work())
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    def _publish(self, tenant: str, message: Message, *, task_id: str | None = None) -> None:
        routed = message.recipient in self._known
        self._tally.sent(
            message.source,
            message.id,
            row_of(message.type),
            message.time,
            clinic=message.recipient,
            to_lps=routed and message.type != "dk.prik.task.status.v1",
            task_id=task_id if isinstance(message, TaskRequest) else None,
        )
        publisher = self._publishers[tenant]

        async def work() -> None:
            try:
                await publisher.publish(message)
            except (KafkaError, ParseError) as exc:
                self.errors += 1
                self._tally.unsent(message.source, message.id)
                _log.warning("demo publish failed", tenant=tenant, error=str(exc))

        self._spawn(work)

    def _publish_raw(self, tenant: str, value: bytes, row: str, *, message_id: str | None = None) -> None:
        """Bytes the SDK would refuse to send; a malformed one is known by where Kafka stored it."""
        raw = self._raw.get(tenant)
        assert raw is not None  # noqa: S101  start() precedes run()
        topic, source, now = self._topics.ingress(tenant), source_of(tenant), datetime.now(UTC)
        if message_id is not None:
            self._tally.sent(source, message_id, row, now)

        async def work() -> None:
            try:
                with kafka_errors(f"publishing to {topic}"):
                    stored = await raw.send_and_wait(
                        topic, value, key=b"raw", headers=[(CONTENT_TYPE, STRUCTURED_CONTENT_TYPE.encode())]
                    )
            except KafkaError as exc:
                self.errors += 1
                if message_id is not None:
                    self._tally.unsent(source, message_id)
                _log.warning("demo publish failed", tenant=tenant, error=str(exc))
                return
            if message_id is None:
                # With no readable id, the router's receipt names the record's place instead.
                self._tally.sent(source, f"{topic}:{stored.partition}:{stored.offset}", row, now)

        self._spawn(work)
