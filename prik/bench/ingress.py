"""`prik bench ingress`: requests a second and latency of a running HTTP ingress (`prik ingress run`).

A small aiohttp client: `concurrency` workers, each posting a fresh valid
video-queue notice (structured mode) after the previous one was answered, for
`seconds`. Each answer's latency (request sent -> answer read, which for a 202
includes Kafka's acks=all acknowledgement) goes into an HDR histogram.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import aiohttp
from hdrh.histogram import HdrHistogram

from contracts import to_bytes
from producers import video_queue_notice

__all__ = ["IngressBenchOptions", "bench_ingress"]

_LOWEST_US, _HIGHEST_US, _DIGITS = 1, 600_000_000, 3


@dataclass(frozen=True, slots=True)
class IngressBenchOptions:
    url: str
    tenant: str
    password: str
    clinic: str = "123456789012"
    seconds: float = 20.0
    concurrency: int = 16


async def bench_ingress(options: IngressBenchOptions) -> dict[str, Any]:
    """Load the ingress for `options.seconds`; the answer counts by status, the rate and the latency."""
    token = base64.b64encode(f"{options.tenant}:{options.password}".encode()).decode()
    headers = {"Content-Type": "application/cloudevents+json", "Authorization": f"Basic {token}"}
    target = f"{options.url.rstrip('/')}/v1/messages"
    histogram = HdrHistogram(_LOWEST_US, _HIGHEST_US, _DIGITS)
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + options.seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline:
            notice = video_queue_notice(
                options.tenant, options.clinic, event="joined", queue_entry_id="bench"
            )
            body = to_bytes(notice)
            started = time.perf_counter()
            async with session.post(target, data=body, headers=headers) as response:
                await response.read()
            micros = round((time.perf_counter() - started) * 1e6)
            histogram.record_value(min(max(micros, _LOWEST_US), _HIGHEST_US))
            statuses[response.status] += 1

    connector = aiohttp.TCPConnector(limit=options.concurrency)
    began = time.monotonic()
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(options.concurrency)))
    elapsed = time.monotonic() - began
    total = sum(statuses.values())
    return {
        "url": target,
        "seconds": round(elapsed, 2),
        "concurrency": options.concurrency,
        "requests": total,
        "statuses": {str(code): count for code, count in sorted(statuses.items())},
        "accepted_per_second": round(statuses[202] / elapsed, 1),
        "requests_per_second": round(total / elapsed, 1),
        "latency_ms": {
            "p50": histogram.get_value_at_percentile(50) / 1000,
            "p99": histogram.get_value_at_percentile(99) / 1000,
            "max": histogram.get_max_value() / 1000,
        },
    }
