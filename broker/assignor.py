"""Partition numbers, not partitions, are what router instances own.

A router instance writes every transaction for input partition number p with
the transactional id `<prefix>-router-p<p>` (the KIP-98 model: aiokafka has
no KIP-447 group-metadata fencing). That fences a paused or cut-off previous
owner only if partition p of *every* router topic has one owner: Range gives
that only while all topics have the same partition count, so this assignor
makes it the rule. A partition number goes to one member whatever the
topics' sizes, which also keeps co-partitioned state (an ingress partition and
the tasks partition of the same number) on one instance.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping

from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata

__all__ = ["PartitionNumberAssignor", "assign_partition_numbers", "transactional_id"]


def transactional_id(prefix: str, partition: int) -> str:
    """The one transactional id under which input partition number `partition` is ever written."""
    return f"{prefix}-router-p{partition}"


def assign_partition_numbers(
    subscriptions: Mapping[str, Iterable[str]], partitions: Mapping[str, Iterable[int]]
) -> dict[str, dict[str, list[int]]]:
    """Member → topic → partitions: every partition numbered p to the one member owning p.

    Pure. Numbers are dealt round-robin over the members in sorted order. A
    member whose subscription does not (yet) list a topic gets none of that
    topic's partitions, even of its numbers: they wait for the next rebalance
    (a new topic triggers one) rather than go to an instance that does not
    hold that number's transactional id.
    """
    members = sorted(subscriptions)
    assignment: dict[str, dict[str, list[int]]] = {member: {} for member in members}
    if not members:
        return assignment
    subscribed = {member: set(topics) for member, topics in subscriptions.items()}
    numbers = sorted({p for topic_partitions in partitions.values() for p in topic_partitions})
    owner = {p: members[i % len(members)] for i, p in enumerate(numbers)}
    for topic in sorted(partitions):
        for p in sorted(partitions[topic]):
            member = owner[p]
            if topic in subscribed[member]:
                assignment[member].setdefault(topic, []).append(p)
    return assignment


class PartitionNumberAssignor(AbstractPartitionAssignor):  # type: ignore[misc]  # aiokafka is untyped
    name = "prik-partition-number"
    version = 0

    @classmethod
    def assign(
        cls, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        subscriptions = {member: list(meta.subscription) for member, meta in members.items()}
        topics = {topic for subscription in subscriptions.values() for topic in subscription}
        partitions: dict[str, set[int]] = collections.defaultdict(set)
        for topic in topics:
            known = cluster.partitions_for_topic(topic)
            if known:
                partitions[topic] = set(known)
        assignment = assign_partition_numbers(subscriptions, partitions)
        return {
            member: ConsumerProtocolMemberAssignment(cls.version, sorted(assignment[member].items()), b"")
            for member in members
        }

    @classmethod
    def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(cls.version, list(topics), b"")

    @classmethod
    def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
        pass
