"""What a dead letter shows of its message: ids by the message-id rule, other texts only without a CPR."""

from __future__ import annotations

import uuid

from broker.dlq import _attribute
from contracts import codec, is_cpr


def test_an_id_holding_a_cpr_shaped_run_is_still_its_id() -> None:
    # Seen in CI: `prik dlq replay --id` found no letter for this random UUID.
    message_id = "d8161064-8592-49aa-94f6-5e2302568989"
    body = codec.dumps({"id": message_id})
    assert _attribute(body, {}, "id") == message_id
    assert _attribute(None, {"ce_id": message_id.encode()}, "id") == message_id


def test_random_ids_are_always_shown() -> None:
    for _ in range(5000):
        message_id = str(uuid.uuid4())
        assert _attribute(codec.dumps({"id": message_id}), {}, "id") == message_id


def test_an_id_that_is_a_cpr_and_other_texts_holding_one_are_not_shown() -> None:
    assert is_cpr("0101901234")
    assert _attribute(codec.dumps({"id": "0101901234"}), {}, "id") is None
    assert _attribute(codec.dumps({"type": "x-0101901234"}), {}, "type") is None
    assert _attribute(codec.dumps({"id": "patient-0101901234"}), {}, "id") == "patient-0101901234"
