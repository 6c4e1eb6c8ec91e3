"""Topic names and the tenant <-> topic <-> CloudEvents source mapping."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from contracts.errors import ConfigError
from contracts.identifiers import TENANT_ID_RE

INGRESS_PREFIX = "prik.ingress."
DELIVER_PREFIX = "prik.deliver."
REPLIES_PREFIX = "prik.replies."
DLQ_TOPIC = "prik.dlq"
DIRECTORY_TOPIC = "prik.directory"
TASKS_TOPIC = "prik.tasks"
INGRESS_PATTERN = r"^prik\.ingress\..+"

SOURCE_PREFIX = "urn:prik:"
ROUTER_SOURCE = "urn:prik:router"
# The router's own source must stay unforgeable, and a tenant id is also a Kafka user:
# no tenant may take the name of the router's, the operators' or the brokers' user.
RESERVED_TENANT_IDS: frozenset[str] = frozenset({"router", "admin", "broker"})

_INGRESS_RE = re.compile(INGRESS_PATTERN)


# Tenant ids come from the tenants file and the directory: few, and asked for per record.
@functools.lru_cache(maxsize=4096)
def _checked(tenant: str) -> str:
    if TENANT_ID_RE.fullmatch(tenant) is None:
        msg = f"tenant id must match {TENANT_ID_RE.pattern}"
        raise ConfigError(msg)
    return tenant


def ingress_topic(tenant: str) -> str:
    """The topic `tenant` publishes on."""
    return INGRESS_PREFIX + _checked(tenant)


def deliver_topic(lps: str) -> str:
    """The topic the router fills for LPS `lps`."""
    return DELIVER_PREFIX + _checked(lps)


def replies_topic(tenant: str) -> str:
    """The topic carrying receipts and task statuses back to `tenant`."""
    return REPLIES_PREFIX + _checked(tenant)


def tenant_of_ingress(topic: str) -> str | None:
    """The tenant whose ingress topic `topic` is, or None."""
    if _INGRESS_RE.match(topic) is None:
        return None
    tenant = topic.removeprefix(INGRESS_PREFIX)
    return tenant if TENANT_ID_RE.fullmatch(tenant) else None


def source_of(tenant: str) -> str:
    """The CloudEvents `source` of `tenant`: `urn:prik:<tenant>`."""
    return SOURCE_PREFIX + _checked(tenant)


def tenant_of_source(source: str) -> str | None:
    """The tenant id in `urn:prik:<tenant>`, or None when `source` is not of that form."""
    if not source.startswith(SOURCE_PREFIX):
        return None
    tenant = source.removeprefix(SOURCE_PREFIX)
    return tenant if TENANT_ID_RE.fullmatch(tenant) else None


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic name under one prefix: `prik` in production, unique per test run."""

    prefix: str = "prik"

    def ingress(self, tenant: str) -> str:
        return f"{self.prefix}.ingress.{_checked(tenant)}"

    def deliver(self, lps: str) -> str:
        return f"{self.prefix}.deliver.{_checked(lps)}"

    def replies(self, tenant: str) -> str:
        return f"{self.prefix}.replies.{_checked(tenant)}"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}.dlq"

    @property
    def directory(self) -> str:
        return f"{self.prefix}.directory"

    @property
    def tasks(self) -> str:
        return f"{self.prefix}.tasks"

    @property
    def ingress_pattern(self) -> str:
        return rf"^{re.escape(self.prefix)}\.ingress\.[a-z0-9][a-z0-9-]{{1,62}}$"

    def tenant_of_ingress(self, topic: str) -> str | None:
        head = f"{self.prefix}.ingress."
        if not topic.startswith(head):
            return None
        tenant = topic.removeprefix(head)
        return tenant if TENANT_ID_RE.fullmatch(tenant) else None
