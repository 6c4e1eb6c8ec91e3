"""The input limits of DESIGN.md "Envelope": refused before a model ever sees the record."""

from __future__ import annotations

import pytest

from contracts import (
    MAX_MESSAGE_BYTES,
    MessageType,
    ParseError,
    Topics,
    check_record,
    example_messages,
    parse,
    parse_tenants,
    to_bytes,
)
from contracts.limits import MAX_HEADER_BYTES, MAX_HEADERS, MAX_KEY_BYTES, MAX_VALUES
from deploy.topics import DLQ_MAX_BATCH_BYTES, INGRESS_MAX_BATCH_BYTES, topic_specs

VALID = to_bytes(example_messages()[MessageType.VIDEO_QUEUE])


@pytest.mark.parametrize(
    "duplicated",
    [
        VALID.replace(b'"recipient":', b'"recipient":"223456789012","recipient":', 1),
        VALID.replace(b'"data":{', b'"data":{"event":"left",', 1),
        VALID.replace(b'"cpr":', b'"cpr":"0101901234","cpr":', 1),
    ],
    ids=["top-level", "in data", "in data.patient"],
)
def test_a_duplicated_key_at_any_level_is_refused(duplicated: bytes) -> None:
    with pytest.raises(ParseError, match="duplicated key") as caught:
        parse(duplicated)
    assert caught.value.stage == "parse"


def test_a_colon_inside_a_string_is_not_mistaken_for_a_member() -> None:
    message = parse(VALID)
    assert parse(to_bytes(message.model_copy(update={"subject": 'a":b "c": d'}))).subject == 'a":b "c": d'


def test_the_value_limit_holds_before_parsing_and_is_configurable() -> None:
    padded = VALID[:-1] + b" " * (MAX_MESSAGE_BYTES - len(VALID)) + b"}"
    assert parse(padded).id == parse(VALID).id
    with pytest.raises(ParseError, match="over the limit of 65536"):
        parse(padded + b" ")
    with pytest.raises(ParseError, match="over the limit of 1024"):
        parse(VALID * 3, max_bytes=1024)


def test_too_many_values_are_refused_before_the_duplicate_pass() -> None:
    many = b'{"a":[' + b",".join([b"1"] * MAX_VALUES) + b"]}"
    with pytest.raises(ParseError, match=f"over {MAX_VALUES} JSON values"):
        parse(many)


def test_keys_and_headers_are_bounded() -> None:
    check_record(b"k" * MAX_KEY_BYTES, VALID, [("h", b"v")] * MAX_HEADERS)
    with pytest.raises(ParseError, match="record key"):
        check_record(b"k" * (MAX_KEY_BYTES + 1), VALID, [])
    with pytest.raises(ParseError, match="headers, over the limit"):
        check_record(None, VALID, [("h", b"v")] * (MAX_HEADERS + 1))
    with pytest.raises(ParseError, match="headers are"):
        check_record(None, VALID, [("h", b"v" * MAX_HEADER_BYTES)])


def test_null_header_values_count_as_absent() -> None:
    assert parse(VALID, [("content-type", None), ("x", None)]) == parse(VALID)


def test_time_outside_2000_2099_is_refused_and_never_overflows() -> None:
    far = VALID.replace(parse(VALID).time.strftime("%Y").encode(), b"9999", 1)
    with pytest.raises(ParseError, match="2000-2099"):
        parse(far)


def test_any_ingress_record_fits_the_dead_letter_topic_with_its_headers() -> None:
    tenants = parse_tenants('[[tenant]]\nid = "lps-x"\nrole = "lps"\n')
    specs = {s.name: s for s in topic_specs(Topics("p"), tenants, 1)}
    assert specs["p.ingress.lps-x"].configs["max.message.bytes"] == str(INGRESS_MAX_BATCH_BYTES)
    # Accounting windows go by the broker's clock, not a sender's claim.
    assert specs["p.ingress.lps-x"].configs["message.timestamp.type"] == "LogAppendTime"
    assert int(specs["p.dlq"].configs["max.message.bytes"]) == DLQ_MAX_BATCH_BYTES
    assert DLQ_MAX_BATCH_BYTES - INGRESS_MAX_BATCH_BYTES >= 4 * MAX_HEADER_BYTES
    assert INGRESS_MAX_BATCH_BYTES >= 4 * MAX_MESSAGE_BYTES
