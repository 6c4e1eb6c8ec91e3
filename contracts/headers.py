"""Kafka header names prik writes and reads."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

ERROR_STAGE = "prik-error-stage"
ERROR_REASON = "prik-error-reason"
ORIGINAL_TOPIC = "prik-original-topic"
ORIGINAL_PARTITION = "prik-original-partition"
ORIGINAL_OFFSET = "prik-original-offset"
CONTENT_TYPE = "content-type"
# Set by `prik dlq replay`: the router lets a replayed record past its dedup window.
REPLAY = "prik-replay"
# On every delivery record, echoed on the LPS's receipt: the router's proof it delivered it there.
ROUTE = "prik-route"

# CloudEvents Kafka protocol binding: binary-mode attributes are `ce_<attribute>` headers.
CE_PREFIX = "ce_"
CE_SPECVERSION = "ce_specversion"


class ErrorStage(StrEnum):
    """Where a message failed, as written to `prik-error-stage` on a dead letter.

    Duplicates and expired messages are not errors: duplicates are dropped and
    expired messages get an `expired` receipt.
    """

    PARSE = "parse"
    VALIDATE = "validate"
    AUTHENTICATE = "authenticate"
    AUTHORISE = "authorise"
    ROUTE = "route"
    TASK = "task"
    RECEIPT = "receipt"
    DELIVER = "deliver"
    # prik itself failed on the record (a bug, or input no rule foresaw): never the sender's fault alone.
    INTERNAL = "internal"


def normalise_headers(headers: Iterable[object] | None) -> tuple[tuple[str, bytes], ...]:
    """Kafka headers as (text name, bytes value) pairs, whatever a client handed over.

    A null value is legal in Kafka (aiokafka and librdkafka both send one) and means
    the header is absent; so does anything that is not a (name, bytes) pair.
    """
    pairs: list[tuple[str, bytes]] = []
    for item in headers or ():
        # What aiokafka hands over: kept as it is (~5x faster than the checks below, once per record).
        if type(item) is tuple and len(item) == 2 and type(item[0]) is str and type(item[1]) is bytes:
            pairs.append(item)
            continue
        if not isinstance(item, tuple | list) or len(item) != 2:
            continue
        name, value = item
        if isinstance(name, bytes | bytearray):
            name = bytes(name).decode("utf-8", "replace")
        if not isinstance(name, str):
            continue
        if isinstance(value, str):
            value = value.encode("utf-8", "surrogatepass")
        if isinstance(value, bytes | bytearray | memoryview):
            pairs.append((name, bytes(value)))
    return tuple(pairs)
