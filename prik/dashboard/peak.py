"""The last peak from the accounting module (`prik usage`), as the dashboard shows it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts import Topics
from contracts.tenants import Tenants
from prik.accounting import usage
from prik.settings import KafkaSettings

from .collector import PEAK_HOURS, PeakFinder
from .model import Peak

__all__ = ["accounting_peak"]


def accounting_peak(
    kafka: KafkaSettings, topics: Topics, tenants: Tenants, *, max_message_bytes: int, hours: int = PEAK_HOURS
) -> PeakFinder:
    """A finder of the busiest minute of the last `hours`, exactly as `prik usage` counts it."""

    async def find() -> Peak | None:
        since = datetime.now(UTC) - timedelta(hours=hours)
        found = await usage(kafka, topics, tenants, since, max_message_bytes=max_message_bytes)
        peak = found.peak
        if peak.at is None or not peak.per_minute:
            return None
        return Peak(
            per_minute=peak.per_minute,
            at=peak.at,
            tenant=peak.tenant,
            tenant_per_minute=peak.tenant_messages,
            since=since,
        )

    return find
