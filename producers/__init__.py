"""The sender SDK: build prik messages, publish them onto a tenant's ingress topic, read the replies."""

from .build import (
    new_id,
    receipt,
    referral_status_notice,
    task_request,
    task_status,
    utc_now,
    video_queue_notice,
)
from .keys import key_of
from .publisher import ProducerFactory, Publisher, PublishResult
from .reading import partitions_of, read_records
from .replies import read_replies

__all__ = [
    "ProducerFactory",
    "PublishResult",
    "Publisher",
    "key_of",
    "new_id",
    "partitions_of",
    "read_records",
    "read_replies",
    "receipt",
    "referral_status_notice",
    "task_request",
    "task_status",
    "utc_now",
    "video_queue_notice",
]
