"""A receiver's reason is checked before it reaches a dead-letter header or a receipt: no CPR, bounded."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.structs import TopicPartition

from consumers import Backoff, CallbackDeliverer, ConsumerStats, DeliveryRefused, RetriableDeliveryError
from consumers.errors import WITHHELD_REASON, safe_reason
from consumers.pipeline import Phase, Pipeline, Record
from contracts import Message, Outcome, Receipt, Topics, parse, to_bytes
from contracts.errors import MAX_REASON_CHARS
from contracts.headers import ERROR_REASON
from producers import video_queue_notice

CLINIC = "123456789012"
CPR = "0101701234"


class FakeOutbox:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, dict[str, bytes]]] = []

    async def send(self, topic: str, *, key: Any, value: bytes, headers: Any = None, **_: Any) -> None:
        self.sent.append((topic, value, dict(headers or [])))


class VendorRefusal(DeliveryRefused):
    """A vendor's own refusal that sets its reason after the checks of the constructor."""

    def __init__(self, text: str) -> None:
        super().__init__("refused")
        self.reason = text


async def _dead_letter(error: Exception, max_retry_time: float = 60.0) -> tuple[dict[str, bytes], Receipt]:
    async def refuse(_message: Message) -> None:
        raise error

    outbox = FakeOutbox()
    topics = Topics("t")
    pipeline = Pipeline(
        lps="lps-test",
        topics=topics,
        deliverer=CallbackDeliverer(refuse),
        outbox=outbox,  # type: ignore[arg-type]  # the same send()
        stats=ConsumerStats(),
        stopping=asyncio.Event(),
        backoff=Backoff(base=0.01, cap=0.01),
        max_retry_time=max_retry_time,
        attempt_timeout=5.0,
    )
    message = video_queue_notice("minlaege-video", CLINIC, event="joined", queue_entry_id="q-1", cpr=CPR)
    value = to_bytes(message)
    record = Record(TopicPartition("t.deliver.lps-test", 0), 7, CLINIC.encode(), value, [], CLINIC, message)
    assert await pipeline.finish(record, Phase())
    ((dlq_topic, _, headers), (receipt_topic, receipt_value, _)) = outbox.sent
    assert dlq_topic == topics.dlq
    assert receipt_topic == topics.ingress("lps-test")
    receipt = parse(receipt_value, [])
    assert isinstance(receipt, Receipt)
    assert receipt.data.outcome is Outcome.DEAD_LETTERED
    return headers, receipt


@pytest.mark.parametrize(
    "error",
    [
        DeliveryRefused(f"no such patient {CPR} at this clinic"),
        VendorRefusal(f"no such patient {CPR[:6]}-{CPR[6:]} at this clinic"),
    ],
)
async def test_a_cpr_in_a_refusal_never_reaches_the_dead_letter_or_receipt(error: Exception) -> None:
    headers, receipt = await _dead_letter(error)
    for text in (headers[ERROR_REASON].decode(), receipt.data.reason or ""):
        assert CPR not in text.replace("-", "")
        assert text == WITHHELD_REASON


async def test_a_cpr_in_a_retriable_reason_never_reaches_the_give_up_reason() -> None:
    headers, receipt = await _dead_letter(RetriableDeliveryError(f"busy with {CPR}"), max_retry_time=0.05)
    for text in (headers[ERROR_REASON].decode(), receipt.data.reason or ""):
        assert "gave up" in text
        assert CPR not in text


async def test_a_long_refusal_is_capped() -> None:
    headers, receipt = await _dead_letter(VendorRefusal("x" * 100_000 + "\nInjected: header"))
    reason = headers[ERROR_REASON].decode()
    assert len(reason) <= MAX_REASON_CHARS
    assert "\n" not in reason
    assert receipt.data.reason == reason


def test_safe_reason() -> None:
    assert safe_reason("webhook answered HTTP 400") == "webhook answered HTTP 400"
    assert safe_reason(f"cpr {CPR}") == WITHHELD_REASON
    assert safe_reason("SOR 123456789012 refused") == "SOR 123456789012 refused"  # a SOR is no CPR
    assert len(safe_reason("y" * 5000)) == MAX_REASON_CHARS
    assert safe_reason("  \n ") == "no reason given"
