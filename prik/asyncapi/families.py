"""prik's topic families (DESIGN.md "Topics") as AsyncAPI channels, derived from the code that makes them.

Each family's address comes from `contracts.Topics` with placeholders for the prefix
and the tenant, and its Kafka binding from `deploy.topics.topic_specs`, so the
document says what `prik topics apply` and `prik deploy render` really create.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from contracts import MessageType, Role, Tenant, Tenants, Topics, example_messages, kind_of
from deploy.render import REPLICATION
from deploy.topics import TopicSpec, topic_specs
from producers.keys import key_of

__all__ = [
    "FAMILIES",
    "KAFKA_BINDING_VERSION",
    "SAMPLE_LPS",
    "SAMPLE_TENANT",
    "Family",
    "delivered_types",
    "family_specs",
    "kafka_channel_binding",
    "key_kind",
    "lps_sends",
    "producer_may_send",
]

KAFKA_BINDING_VERSION = "0.5.0"
# Valid tenant ids that stand in for `{tenant}` and `{lps}` while the code builds a topic name.
SAMPLE_TENANT = "sample-tenant"
SAMPLE_LPS = "sample-lps"
_PREFIX_PLACEHOLDER = "{prefix}"

# Kafka topic configs the Kafka channel binding types (bindingVersion 0.5.0); others stay text.
_LIST_CONFIGS = frozenset({"cleanup.policy"})
_INT_CONFIGS = frozenset({"retention.ms", "retention.bytes", "delete.retention.ms", "max.message.bytes"})


@dataclass(frozen=True, slots=True)
class Family:
    """One topic family: `topic` names its topic for a tenant (or ignores it: one topic for all)."""

    name: str
    parameter: str | None
    topic: Callable[[Topics, str], str]
    title: str
    description: str
    key: str

    @property
    def sample(self) -> str:
        return SAMPLE_LPS if self.parameter == "lps" else SAMPLE_TENANT

    def address(self) -> str:
        """The channel address, e.g. `{prefix}.ingress.{tenant}`."""
        name = self.topic(Topics(prefix=_PREFIX_PLACEHOLDER), self.sample)
        return name.replace(self.sample, f"{{{self.parameter}}}") if self.parameter else name

    def topic_name(self, topics: Topics, tenant: str | None = None) -> str:
        return self.topic(topics, tenant or self.sample)


FAMILIES: tuple[Family, ...] = (
    Family(
        "ingress",
        "tenant",
        lambda t, tenant: t.ingress(tenant),
        "A tenant's ingress",
        "Where a tenant publishes, and only that tenant (Kafka ACLs): the topic it arrives on is "
        "who sent it. The router reads every ingress topic.",
        "recipient SOR (advisories, task requests); task id (task statuses); message id (receipts)",
    ),
    Family(
        "deliver",
        "lps",
        lambda t, lps: t.deliver(lps),
        "An LPS's deliveries",
        "What the router routed to one LPS's clinics; that LPS's consumer reads it in group "
        "`{prefix}-<lps>` and delivers each message to the LPS, in order per clinic.",
        "clinic SOR",
    ),
    Family(
        "replies",
        "tenant",
        lambda t, tenant: t.replies(tenant),
        "A tenant's replies",
        "Receipts (exactly one per message sent) and task statuses for a sender; only that tenant reads it.",
        "message id (receipts); task id (task statuses)",
    ),
    Family(
        "dlq",
        None,
        lambda t, _: t.dlq,
        "Dead letters",
        "Records the router or a consumer could not handle: the original key and bytes, with where "
        "and why in headers. Operators read them (`prik dlq list`) and replay them (`prik dlq replay`).",
        "the original key",
    ),
    Family(
        "directory",
        None,
        lambda t, _: t.directory,
        "Clinic directory",
        "Compacted: which LPS serves each clinic. Operators write it (`prik directory load`); a "
        "tombstone (null value) removes a clinic. The router reads it to route.",
        "clinic SOR",
    ),
    Family(
        "tasks",
        None,
        lambda t, _: t.tasks,
        "Task states",
        "Compacted: the latest state of every task, written and read by the router alone (each "
        "instance for the partitions it owns, co-partitioned with ingress by task id).",
        "task id",
    ),
)


def _sample_tenants() -> Tenants:
    return Tenants(
        tenant=(Tenant(id=SAMPLE_TENANT, role=Role.PRODUCER), Tenant(id=SAMPLE_LPS, role=Role.LPS))
    )


def family_specs(topics: Topics | None = None, replication: int = REPLICATION) -> dict[str, TopicSpec]:
    """Each family's `TopicSpec` as `prik topics apply` makes it (replication 3, as deployed)."""
    topics = topics or Topics()
    by_name = {spec.name: spec for spec in topic_specs(topics, _sample_tenants(), replication)}
    return {family.name: by_name[family.topic_name(topics)] for family in FAMILIES}


def _config_value(name: str, value: str) -> str | int | list[str]:
    if name in _LIST_CONFIGS:
        return value.split(",")
    if name in _INT_CONFIGS:
        return int(value)
    return value


def kafka_channel_binding(
    family: Family, spec: TopicSpec, prefix: str, replicas: int = REPLICATION
) -> dict[str, Any]:
    """The Kafka channel binding of `family`: topic (under `prefix`), partitions, replicas, configs."""
    topic = family.address().replace(_PREFIX_PLACEHOLDER, prefix)
    return {
        "topic": topic,
        "partitions": spec.partitions,
        "replicas": replicas,
        "topicConfiguration": {k: _config_value(k, v) for k, v in sorted(spec.configs.items())},
        "bindingVersion": KAFKA_BINDING_VERSION,
    }


def key_kind(type_: MessageType) -> str:
    """What a message of `type_` is keyed by on ingress and replies, read off `producers.key_of`."""
    message = example_messages()[type_]
    key = key_of(message)
    candidates: Mapping[str, object] = {
        "sor": message.recipient,
        "task-id": str(getattr(message.data, "task_id", "")),
        "message-id": getattr(message.data, "message_id", None),
    }
    for kind, value in candidates.items():
        if key == value:
            return kind
    msg = f"the key of {type_} is none of {', '.join(candidates)}"
    raise ValueError(msg)


def delivered_types() -> list[MessageType]:
    """Types the router delivers to an LPS: every advisory and task message (receipts go to replies)."""
    return [t for t in MessageType if kind_of(t) != "platform"]


def lps_sends() -> list[MessageType]:
    """Types an LPS may publish without a `may_send` grant."""
    lps = Tenant(id=SAMPLE_LPS, role=Role.LPS)
    return [t for t in MessageType if lps.allowed(t)]


def producer_may_send() -> list[MessageType]:
    """Types a producer tenant may be granted (`may_send`)."""
    allowed: list[MessageType] = []
    for t in MessageType:
        try:
            Tenant(id=SAMPLE_TENANT, role=Role.PRODUCER, may_send=frozenset({t}))
        except ValueError:
            continue
        allowed.append(t)
    return allowed
