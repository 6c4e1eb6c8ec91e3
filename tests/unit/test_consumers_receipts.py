"""Receipt ids: the UUID 5 of (LPS, sender, message id), the same every time a message is finished."""

from __future__ import annotations

import random
import uuid

from consumers import receipt_id
from consumers.receipts import _RECEIPT_NAMESPACE
from producers import video_queue_notice


def test_receipt_id_is_the_uuid5_of_lps_source_and_message_id() -> None:
    rng = random.Random(5)
    for i in range(500):
        message = video_queue_notice("minlaege-video", "123456789012", event="joined", queue_entry_id=f"q{i}")
        lps = rng.choice(["lps-xmo", "lps-other", "l"])
        expected = uuid.uuid5(_RECEIPT_NAMESPACE, f"{lps}|{message.source}|{message.id}")
        assert receipt_id(lps, message) == str(expected)
        assert uuid.UUID(receipt_id(lps, message)).version == 5


def test_receipt_id_is_stable_and_tells_lps_apart() -> None:
    message = video_queue_notice("minlaege-video", "123456789012", event="joined", queue_entry_id="q")
    assert receipt_id("lps-xmo", message) == receipt_id("lps-xmo", message)
    assert receipt_id("lps-xmo", message) != receipt_id("lps-other", message)
