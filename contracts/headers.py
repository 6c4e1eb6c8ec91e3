"""Kafka header names prik writes and reads."""

from __future__ import annotations

from enum import StrEnum

ERROR_STAGE = "prik-error-stage"
ERROR_REASON = "prik-error-reason"
ORIGINAL_TOPIC = "prik-original-topic"
ORIGINAL_PARTITION = "prik-original-partition"
ORIGINAL_OFFSET = "prik-original-offset"
CONTENT_TYPE = "content-type"
# Set by `prik dlq replay`: the router lets a replayed record past its dedup window.
REPLAY = "prik-replay"

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
