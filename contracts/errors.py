"""The project's exception tree.

Every error prik raises on purpose derives from `PrikError`, and also from the
builtin it resembles, so callers may catch either the precise prik class or the
familiar builtin.
"""

from __future__ import annotations

from typing import Literal

ParseStage = Literal["parse", "validate"]

# Reasons travel in dead-letter headers and receipts; a bound keeps them headers, not payloads.
MAX_REASON_CHARS = 300


def cap_reason(reason: str, limit: int = MAX_REASON_CHARS) -> str:
    """Shorten `reason` to at most `limit` characters, marking the cut."""
    if len(reason) <= limit:
        return reason
    return reason[: limit - 3] + "..."


class PrikError(Exception):
    """Root of every prik error; `retriable` says whether trying again may help."""

    retriable: bool = False


class ConfigError(PrikError, ValueError):
    """Configuration or a tenants file is unusable."""


class ParseError(PrikError, ValueError):
    """Bytes that are not a valid prik message.

    `reason` is short and human-readable and never contains patient data, so it
    may go into logs, dead-letter headers and receipts. `stage` is "parse" when
    the bytes are not a JSON object or the headers are broken, "validate" when
    the message rules fail.
    """

    # A default stage keeps the exception picklable (Exception re-creates from args).
    def __init__(self, reason: str, *, stage: ParseStage = "validate") -> None:
        self.reason = cap_reason(reason)
        self.stage: ParseStage = stage
        super().__init__(self.reason)


class KafkaError(PrikError, ConnectionError):
    """Talking to Kafka failed; `retriable` is decided per failure."""

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


class TooLargeError(KafkaError):
    """Kafka refused a record as too large: sending it again cannot help."""


class NotAuthorisedError(PrikError, PermissionError):
    """A party tried something its role or grants do not allow."""


class TransitionError(PrikError, ValueError):
    """A task status move the FHIR Task lifecycle refuses."""


class DeliveryError(PrikError, RuntimeError):
    """A message could not be handed to its receiver."""
