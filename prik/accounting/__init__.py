"""Who causes how much load: per-party accounting read from Kafka itself (`prik usage`).

    usage = await prik.accounting.usage(settings.kafka, settings.topics, tenants, since=...)
    usage.to_json()   # the JSON object of DESIGN.md "Accounting"
    load = await prik.accounting.traffic(...)   # messages, bytes and peak only: no validation, cheap

`usage.py` is the pure aggregation (`UsageTally`), `reading.py` the Kafka read of
one window, `view.py` the rich table `prik usage` and `prik demo` print.
"""

from .reading import RECEIPT_LEAD, Progress, traffic, usage
from .usage import OUTCOME_FIELDS, Peak, ReceiverUsage, SenderUsage, Usage, UsageTally

__all__ = [
    "OUTCOME_FIELDS",
    "RECEIPT_LEAD",
    "Peak",
    "Progress",
    "ReceiverUsage",
    "SenderUsage",
    "Usage",
    "UsageTally",
    "traffic",
    "usage",
]
