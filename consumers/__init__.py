"""The clinic-side runtime an LPS vendor runs.

It consumes its delivery topic, delivers, retries, writes receipts and answers tasks.

Start one in-process (the demo does this)::

    async with ReferenceLps() as lps_server, ClinicConsumer(
        settings.kafka, settings.topics, "lps-xmo",
        WebhookDeliverer(lps_server.url, lps_server.secret),
        http_port=0,
    ) as consumer:
        ...
"""

from .backoff import Backoff, parse_retry_after
from .deliverers import (
    CallbackDeliverer,
    Deliverer,
    Delivery,
    PrintDeliverer,
    WebhookDeliverer,
    check_webhook_url,
)
from .errors import DeliveryRefused, EndpointGone, RetriableDeliveryError, TaskAnswerRefused
from .offsets import OffsetTracker
from .receipts import ReceiptWriter, build_receipt, build_task_status, receipt_id
from .reference_lps import Received, ReferenceLps
from .runtime import ClinicConsumer
from .signing import (
    WebhookSecrets,
    check_secret,
    generate_secret,
    make_webhook,
    sign_headers,
    verify_signature,
)
from .stats import ConsumerStats, HealthReport, OutcomeEvent

__all__ = [
    "Backoff",
    "CallbackDeliverer",
    "ClinicConsumer",
    "ConsumerStats",
    "Deliverer",
    "Delivery",
    "DeliveryRefused",
    "EndpointGone",
    "HealthReport",
    "OffsetTracker",
    "OutcomeEvent",
    "PrintDeliverer",
    "ReceiptWriter",
    "Received",
    "ReferenceLps",
    "RetriableDeliveryError",
    "TaskAnswerRefused",
    "WebhookDeliverer",
    "WebhookSecrets",
    "build_receipt",
    "build_task_status",
    "check_secret",
    "check_webhook_url",
    "generate_secret",
    "make_webhook",
    "parse_retry_after",
    "receipt_id",
    "sign_headers",
    "verify_signature",
]
