"""The router's Prometheus metrics: throughput by verdict, aborts, lag and progress.

A registry of its own (no process-wide globals). Lag and the time of the last
commit answer "alive but not progressing", which a process check cannot.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from contracts import MessageType

__all__ = ["RouterMetrics"]

_KNOWN_TYPES = frozenset(MessageType)


class RouterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.records = Counter(
            "prik_router_records",
            "Ingress records decided, by verdict and message type.",
            ["verdict", "type"],
            registry=self.registry,
        )
        self.batches = Counter("prik_router_batches", "Transactions committed.", registry=self.registry)
        self.aborted = Counter(
            "prik_router_aborted_batches", "Transactions aborted and retried.", registry=self.registry
        )
        self.last_commit = Gauge(
            "prik_router_last_commit_timestamp_seconds",
            "Unix time of the last committed batch.",
            registry=self.registry,
        )
        self.lag = Gauge(
            "prik_router_lag_records",
            "Records behind the partition's high watermark after the last batch.",
            ["topic", "partition"],
            registry=self.registry,
        )
        self._server: WSGIServer | None = None

    def decided(self, verdict: str, message_type: str) -> None:
        # Types come from senders: unknown ones share one label, so nobody can grow the series.
        label = message_type if message_type in _KNOWN_TYPES else "other"
        self.records.labels(verdict, label).inc()

    def committed(self, lags: Iterable[tuple[str, int, int]]) -> None:
        self.batches.inc()
        self.last_commit.set(time.time())
        for topic, partition, lag in lags:
            self.lag.labels(topic, str(partition)).set(lag)

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Expose /metrics on `host:port` from a daemon thread."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
