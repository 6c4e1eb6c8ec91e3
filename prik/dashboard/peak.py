"""The last peak from the accounting module (`prik usage`), as the dashboard shows it."""

from __future__ import annotations

from datetime import datetime

from contracts import Topics
from contracts.tenants import Tenants
from prik.accounting import traffic
from prik.settings import KafkaSettings

from .collector import PeakFinder
from .model import Peak

__all__ = ["accounting_peak"]


def accounting_peak(kafka: KafkaSettings, topics: Topics, tenants: Tenants) -> PeakFinder:
    """A finder of the busiest minute since a time, exactly as `prik usage` counts it.

    `traffic`, not `usage`: the load alone, without validating every record, so asking
    now and then costs little more than reading the window's ingress records.
    """

    async def find(since: datetime) -> Peak | None:
        found = await traffic(kafka, topics, tenants, since)
        peak = found.peak
        if peak.at is None or not peak.per_minute:
            return None
        return Peak(
            per_minute=peak.per_minute,
            at=peak.at,
            tenant=peak.tenant,
            tenant_per_minute=peak.tenant_messages,
        )

    return find
