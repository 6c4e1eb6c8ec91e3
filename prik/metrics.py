"""What the router and the consumers share about Prometheus: series names, bounded labels, serving.

Every process (and every `ClinicConsumer`, several of which share the demo's
process) builds its own `CollectorRegistry`; nothing registers with the
library's global default, so two of them never collide and tests see only their own.

Label values are bounded: a label that could be chosen by a sender (its message
type, the tenant of a topic) only ever takes a value from a known set, anything
else becomes `other`. No sender can grow the number of series, and no CPR or raw
record key can reach the exposition.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from contracts import ConfigError, MessageType, codec

# Without this every counter and histogram also exports a `*_created` series: twice the
# series for a timestamp no dashboard here uses. It is the library's switch for the
# process, set before any of prik's metrics exist (they are all made after this import).
disable_created_metrics()  # type: ignore[no-untyped-call]  # the library leaves it unannotated

__all__ = [
    "LAG",
    "LATENCY_BUCKETS",
    "MESSAGE_TYPES",
    "OTHER",
    "SERIES",
    "MetricsServer",
    "bounded",
    "exposition",
    "lag_gauge",
    "partition_lags",
    "prometheus_response",
    "set_lags",
]

# The series DESIGN.md ("Accounting") names; dashboards and tests hold to exactly these.
INGRESS_MESSAGES = "prik_ingress_messages_total"
INGRESS_BYTES = "prik_ingress_bytes_total"
DELIVERIES = "prik_deliveries_total"
ATTEMPTS = "prik_delivery_attempts_total"
LATENCY = "prik_delivery_latency_seconds"
LAG = "prik_lag_records"
OLDEST = "prik_oldest_undelivered_seconds"
SERIES = frozenset({INGRESS_MESSAGES, INGRESS_BYTES, DELIVERIES, ATTEMPTS, LATENCY, LAG, OLDEST})

OTHER = "other"
MESSAGE_TYPES = frozenset(MessageType)
# Message time -> the LPS answered: a tap on the shoulder should take milliseconds;
# a retried one takes seconds to a minute. Anything later only needs to be counted (+Inf).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# A position the client does not know yet (just assigned) is not worth holding a scrape for.
_POSITION_TIMEOUT = 0.5


def bounded(value: str | None, known: Collection[str]) -> str:
    """`value` when it is one of `known`, else `other`: the label can take no value a sender picks."""
    return value if value is not None and value in known else OTHER


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text format."""
    return generate_latest(registry)


def lag_gauge(registry: CollectorRegistry) -> Gauge:
    return Gauge(
        "prik_lag_records",
        "Records between a group's position and the partition's high watermark (last fetch).",
        ["group", "topic", "partition"],
        registry=registry,
    )


def set_lags(gauge: Gauge, group: str, lags: Iterable[tuple[str, int, int]]) -> None:
    """Replace every lag series by those of the partitions assigned now (revoked ones disappear).

    Topic names are operators' (only they create topics), partitions are bounded by
    the topic's partition count: neither is a sender's to choose.
    """
    values = list(lags)  # computed before the clear, so a scrape never sees the gauge half empty
    gauge.clear()
    for topic, partition, lag in values:
        gauge.labels(group, topic, str(partition)).set(lag)


def _end(consumer: Any, tp: Any) -> int | None:  # noqa: ANN401  aiokafka is untyped
    """How far the consumer can read: the last stable offset under read_committed, else the high watermark.

    prik's consumers read committed records only, so the records of a transaction
    still open are not behind yet; both are None until the first fetch of `tp`.
    """
    try:
        stable: int | None = consumer.last_stable_offset(tp)
        high: int | None = consumer.highwater(tp)
    except AssertionError:  # aiokafka asserts the partition is still assigned: revoked meanwhile
        return None
    return stable if stable is not None and stable >= 0 else high


async def partition_lags(consumer: Any, partitions: Iterable[Any]) -> list[tuple[str, int, int]]:  # noqa: ANN401  aiokafka is untyped
    """`highwater - position` of each partition the consumer fetched from; others are left out.

    Both come from the client's own state (the high watermark of the last fetch
    response), so this asks Kafka nothing and costs a scrape no round trip.
    """
    known = [(tp, end) for tp in partitions if (end := _end(consumer, tp)) is not None]

    async def position(tp: Any) -> int | None:  # noqa: ANN401  aiokafka is untyped
        # A partition revoked meanwhile, or still resetting, has no position to report.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_POSITION_TIMEOUT):
                result: int = await consumer.position(tp)
                return result
        return None

    positions = await asyncio.gather(*(position(tp) for tp, _ in known))
    return [
        (tp.topic, tp.partition, max(0, hw - pos))
        for (tp, hw), pos in zip(known, positions, strict=True)
        if pos is not None
    ]


Health = Callable[[], Awaitable[tuple[bool, dict[str, object]]]]


class MetricsServer:
    """`GET /metrics` (Prometheus text) and `GET /health` (JSON; 503 when unhealthy) on `host:port`.

    `refresh` runs before each scrape, for values read at scrape time (lag). It runs
    on the service's own event loop: a loop that stops turning stops answering, which
    is what a probe should see.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        registry: CollectorRegistry,
        health: Health,
        refresh: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._registry = registry
        self._health = health
        self._refresh = refresh
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._get_metrics)
        app.router.add_get("/health", self._get_health)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._requested_port).start()
        except OSError as exc:
            await runner.cleanup()
            # A port in use or an address not of this host: the operator's setting, one clear line.
            msg = f"cannot serve metrics on {self._host}:{self._requested_port} ({exc.strerror or exc})"
            raise ConfigError(msg) from None
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _get_metrics(self, _request: web.Request) -> web.Response:
        if self._refresh is not None:
            await self._refresh()
        return prometheus_response(self._registry)

    async def _get_health(self, _request: web.Request) -> web.Response:
        healthy, body = await self._health()
        return web.Response(
            status=200 if healthy else 503, body=codec.dumps(body), content_type="application/json"
        )


def prometheus_response(registry: CollectorRegistry) -> web.Response:
    """An aiohttp response with the registry's exposition (text format 0.0.4, which every scraper reads)."""
    return web.Response(body=exposition(registry), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})
