"""The router's Prometheus series and its health: who sends how much, with what verdict, and progress.

One registry per router (no process-wide globals). DESIGN.md's series:
`prik_ingress_messages_total{tenant,type,verdict}`, `prik_ingress_bytes_total{tenant}`
and `prik_lag_records{group,topic,partition}`; besides them the router's own
`prik_router_batches_total`, `prik_router_aborted_batches_total` and
`prik_router_last_commit_timestamp_seconds`. A record counts once its batch has
committed, for the tenant whose ingress topic it arrived on (whatever it claims),
so an aborted and retried batch is not counted twice.

Health is progress, not liveness: the fetch loop turns, batches do not keep
aborting, and records waiting are committed within `stall_after` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge

from contracts import Tenants, Topics
from prik.metrics import MESSAGE_TYPES, OTHER, bounded, lag_gauge

from .records import Incoming
from .router import Routed, Verdict

__all__ = ["VERDICTS", "RouterMetrics"]

VERDICTS = frozenset(get_args(Verdict))
# Ingress topics whose tenant label is remembered at most (the pattern subscription bounds them anyway).
_MAX_TOPICS = 10_000


class RouterMetrics:
    def __init__(self, topics: Topics, tenants: Callable[[], Tenants], *, stall_after: float = 60.0) -> None:
        self._topics = topics
        self._tenants = tenants
        self._stall_after = stall_after
        self.registry = CollectorRegistry()
        self.ingress_messages = Counter(
            "prik_ingress_messages",
            "Ingress records decided, by the tenant of their ingress topic, message type and verdict.",
            ["tenant", "type", "verdict"],
            registry=self.registry,
        )
        self.ingress_bytes = Counter(
            "prik_ingress_bytes",
            "Record value bytes of the ingress records decided, by the tenant of their ingress topic.",
            ["tenant"],
            registry=self.registry,
        )
        self.lag = lag_gauge(self.registry)
        self.batches = Counter("prik_router_batches", "Transactions committed.", registry=self.registry)
        self.aborted = Counter(
            "prik_router_aborted_batches", "Transactions aborted and retried.", registry=self.registry
        )
        self.last_commit = Gauge(
            "prik_router_last_commit_timestamp_seconds",
            "Unix time of the last committed batch.",
            registry=self.registry,
        )
        # Label children by label values, and tenant labels by ingress topic for the tenants they
        # were worked out from: py-spy put `labels()` (hashing, checks) at ~5% of routing, per record.
        self._message_children: dict[tuple[str, str, str], Counter] = {}
        self._byte_children: dict[str, Counter] = {}
        self._tenant_labels: dict[str, str] = {}
        self._labelled_for: Tenants | None = None
        now = time.monotonic()
        self._polled_at = now
        # Progress is measured from the start until the first commit.
        self._progress_at = now
        self._committed_at: float | None = None
        self._failing_since: float | None = None

    def tenant_of(self, topic: str) -> str:
        """The tenant label of an ingress topic: a tenant of the tenants file, else `other`."""
        tenants = self._tenants()
        if tenants is not self._labelled_for or len(self._tenant_labels) >= _MAX_TOPICS:
            # The tenants file changed (a tenant may be gone): work every label out again.
            self._labelled_for, self._tenant_labels = tenants, {}
        label = self._tenant_labels.get(topic)
        if label is None:
            tenant = self._topics.tenant_of_ingress(topic)
            label = tenant if tenant is not None and tenants.get(tenant) is not None else OTHER
            self._tenant_labels[topic] = label
        return label

    def decided(self, rec: Incoming, routed: Routed) -> None:
        """Count one committed decision."""
        self.decided_all(((rec, routed),))

    def decided_all(self, decided: Iterable[tuple[Incoming, Routed]]) -> None:
        """Count a committed batch's decisions: one increment per series, not per record.

        py-spy put the per-record increments (a lock each) at ~5% of the router's CPU.
        """
        messages: dict[tuple[str, str, str], int] = {}
        sizes: dict[str, int] = {}
        for rec, routed in decided:
            key = (rec.topic, routed.message_type, routed.verdict)
            messages[key] = messages.get(key, 0) + 1
            sizes[rec.topic] = sizes.get(rec.topic, 0) + len(rec.value or b"")
        for (topic, message_type, verdict), count in messages.items():
            self._message_child(topic, message_type, verdict).inc(count)
        for topic, size in sizes.items():
            self._byte_child(self.tenant_of(topic)).inc(size)

    def _message_child(self, topic: str, message_type: str, verdict: str) -> Counter:
        # The type of a refused record is what the sender wrote: only the contract's types count.
        # Bounded first, so the children kept are as few as the series.
        key = (self.tenant_of(topic), bounded(message_type, MESSAGE_TYPES), bounded(verdict, VERDICTS))
        child = self._message_children.get(key)
        if child is None:
            child = self._message_children[key] = self.ingress_messages.labels(*key)
        return child

    def _byte_child(self, tenant: str) -> Counter:
        child = self._byte_children.get(tenant)
        if child is None:
            child = self._byte_children[tenant] = self.ingress_bytes.labels(tenant)
        return child

    def started(self) -> None:
        now = time.monotonic()
        self._polled_at = self._progress_at = now

    def polled(self) -> None:
        """The fetch loop turned (with or without records)."""
        self._polled_at = time.monotonic()

    def committed(self) -> None:
        now = time.monotonic()
        self.batches.inc()
        self.last_commit.set(time.time())
        self._committed_at = self._progress_at = now
        self._failing_since = None

    def aborted_batch(self) -> None:
        self.aborted.inc()
        if self._failing_since is None:
            self._failing_since = time.monotonic()

    def last_commit_age(self) -> float | None:
        return None if self._committed_at is None else time.monotonic() - self._committed_at

    def assess(self, *, running: bool, lag: int) -> tuple[bool, str]:
        """Healthy while the router makes progress: idle with nothing waiting counts as progress."""
        now = time.monotonic()
        stall = self._stall_after
        if not running:
            return False, "not running"
        if now - self._polled_at > stall:
            return False, f"no fetch for {now - self._polled_at:.0f} s"
        if self._failing_since is not None and now - self._failing_since > stall:
            return False, f"every batch aborted for {now - self._failing_since:.0f} s"
        if lag > 0 and now - self._progress_at > stall:
            return False, f"{lag} records waiting, nothing committed for {now - self._progress_at:.0f} s"
        return True, "ok" if lag else "idle"
