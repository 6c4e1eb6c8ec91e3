"""Errors a deliverer raises to say how a delivery failed.

The runtime decides what happens next from the class alone: a `DeliveryRefused`
ends the message in the dead-letter topic at once, a `RetriableDeliveryError`
(or any other exception from a callback) is tried again with backoff.
"""

from __future__ import annotations

from contracts import DeliveryError, PrikError, contains_cpr
from contracts.errors import MAX_REASON_CHARS, cap_reason

__all__ = [
    "WITHHELD_REASON",
    "DeliveryRefused",
    "EndpointGone",
    "RetriableDeliveryError",
    "TaskAnswerRefused",
    "safe_reason",
]

# What stands in for a receiver's reason that looked like it carried a CPR number.
WITHHELD_REASON = "reason withheld: it looked like patient data"


def safe_reason(reason: object, limit: int = MAX_REASON_CHARS) -> str:
    """A receiver's reason as it may travel in dead-letter headers, receipts and logs.

    Vendor code writes these, so they are checked rather than trusted: anything shaped
    like a CPR number replaces the whole text with a neutral one (a partial redaction
    could leave the rest of a patient's details), and the length is capped.
    """
    text = reason if isinstance(reason, str) else type(reason).__name__
    text = " ".join(text.split())  # one line: no header or log injection through newlines
    if contains_cpr(text):
        return WITHHELD_REASON
    return cap_reason(text, limit) or "no reason given"


class DeliveryRefused(DeliveryError):  # noqa: N818  reads as the outcome it names; public API
    """The receiver refused the message for good: trying again cannot help.

    `reason` reaches dead-letter headers and receipts, so it must never carry patient data:
    one that looks like it does is replaced by a neutral text (`safe_reason`).
    """

    retriable = False

    def __init__(self, reason: str) -> None:
        self.reason = safe_reason(reason)
        super().__init__(self.reason)


class EndpointGone(DeliveryRefused):
    """The receiver answered 410 Gone: the endpoint no longer takes messages."""


class RetriableDeliveryError(DeliveryError):
    """The delivery failed for now; `retry_after` (seconds) is the receiver's wish, if it said one."""

    retriable = True

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        self.reason = safe_reason(reason)
        self.retry_after = retry_after
        super().__init__(self.reason)


class TaskAnswerRefused(PrikError, ValueError):  # noqa: N818  named like DeliveryRefused
    """An answer to a task that the contract refuses (bad id, unknown status, a status an LPS may not set)."""
