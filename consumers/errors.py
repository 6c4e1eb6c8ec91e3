"""Errors a deliverer raises to say how a delivery failed.

The runtime decides what happens next from the class alone: a `DeliveryRefused`
ends the message in the dead-letter topic at once, a `RetriableDeliveryError`
(or any other exception from a callback) is tried again with backoff.
"""

from __future__ import annotations

from contracts import DeliveryError, PrikError
from contracts.errors import cap_reason

__all__ = ["DeliveryRefused", "EndpointGone", "RetriableDeliveryError", "TaskAnswerRefused"]


class DeliveryRefused(DeliveryError):  # noqa: N818  reads as the outcome it names; public API
    """The receiver refused the message for good: trying again cannot help.

    `reason` reaches dead-letter headers and receipts, so it must never carry patient data.
    """

    retriable = False

    def __init__(self, reason: str) -> None:
        self.reason = cap_reason(reason)
        super().__init__(self.reason)


class EndpointGone(DeliveryRefused):
    """The receiver answered 410 Gone: the endpoint no longer takes messages."""


class RetriableDeliveryError(DeliveryError):
    """The delivery failed for now; `retry_after` (seconds) is the receiver's wish, if it said one."""

    retriable = True

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        self.reason = cap_reason(reason)
        self.retry_after = retry_after
        super().__init__(self.reason)


class TaskAnswerRefused(PrikError, ValueError):  # noqa: N818  named like DeliveryRefused
    """An answer to a task that the contract refuses (bad id, unknown status, a status an LPS may not set)."""
