"""Strimzi manifests from the tenants file: a `KafkaTopic` per topic, a `KafkaUser` per tenant and the router.

The topics are `topic_specs` (partitions and configs exactly as `prik topics apply`
makes them, replication 3) and the users' ACLs are `acl_table`, mapped entry by
entry to Strimzi's rule shape, so a cluster run by Strimzi's operators holds what
`prik topics apply --credentials` would have made. Pure: `write_manifests` is the
only function that touches the disk.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from contracts import ConfigError, Topics
from contracts.tenants import Tenants

from .acls import LITERAL, PREFIXED, Acl, acl_table, users_of
from .topics import topic_specs

__all__ = [
    "KAFKA_API_VERSION",
    "REPLICATION",
    "render_manifests",
    "strimzi_acl_rules",
    "write_manifests",
]

# The Strimzi API version of the CRDs whose schemas tests/data/strimzi/ holds.
KAFKA_API_VERSION = "kafka.strimzi.io/v1"
# A Strimzi cluster is deployed with three brokers (deploy/k8s/kafka.yaml); min ISR 2 follows.
REPLICATION = 3

_RESOURCE_TYPES = {"TOPIC": "topic", "GROUP": "group", "TRANSACTIONAL_ID": "transactionalId"}
_PATTERNS = {LITERAL: "literal", PREFIXED: "prefix"}
_OPERATIONS = {"READ": "Read", "WRITE": "Write", "DESCRIBE": "Describe"}
_NOT_IN_A_NAME = re.compile(r"[^a-z0-9.-]+")

Manifest = dict[str, Any]


def _resource_name(name: str) -> str:
    """A Kubernetes object name for a topic (lowercase DNS subdomain); `spec.topicName` keeps the real one."""
    return _NOT_IN_A_NAME.sub("-", name.lower()).strip("-.")[:253]


def strimzi_acl_rules(acls: Iterable[Acl]) -> list[dict[str, Any]]:
    """Strimzi `spec.authorization.acls` for one user's entries: a rule per resource, operations sorted."""
    operations: defaultdict[tuple[str, str, str, str], set[str]] = defaultdict(set)
    for acl in acls:
        try:
            key = (_RESOURCE_TYPES[acl.resource_type], acl.name, _PATTERNS[acl.pattern], acl.host)
            operations[key].add(_OPERATIONS[acl.operation])
        except KeyError as exc:
            msg = f"ACL {acl} has no Strimzi form ({exc.args[0]})"
            raise ConfigError(msg) from None
    return [
        {
            "resource": {"type": kind, "name": name, "patternType": pattern},
            "operations": sorted(ops),
            "host": host,
        }
        for (kind, name, pattern, host), ops in sorted(operations.items())
    ]


def _metadata(name: str, cluster: str) -> dict[str, Any]:
    # The label tells Strimzi's topic and user operators which Kafka cluster the object belongs to.
    labels = {"strimzi.io/cluster": cluster, "app.kubernetes.io/part-of": "prik"}
    return {"name": name, "labels": labels}


def render_manifests(topics: Topics, tenants: Tenants, cluster: str = "prik") -> list[Manifest]:
    """Every `KafkaTopic`, then a `KafkaUser` per tenant and for `router`, under `topics.prefix`."""
    table = acl_table(topics, tenants)
    manifests: list[Manifest] = [
        {
            "apiVersion": KAFKA_API_VERSION,
            "kind": "KafkaTopic",
            "metadata": _metadata(_resource_name(spec.name), cluster),
            "spec": {
                "topicName": spec.name,
                "partitions": spec.partitions,
                "replicas": REPLICATION,
                "config": dict(sorted(spec.configs.items())),
            },
        }
        for spec in topic_specs(topics, tenants, REPLICATION)
    ]
    per_user: defaultdict[str, list[Acl]] = defaultdict(list)
    for acl in table:
        per_user[acl.principal.removeprefix("User:")].append(acl)
    manifests.extend(
        {
            "apiVersion": KAFKA_API_VERSION,
            "kind": "KafkaUser",
            "metadata": _metadata(user, cluster),
            "spec": {
                # Strimzi's user operator makes the password and keeps it in a Secret named `user`.
                "authentication": {"type": "scram-sha-512"},
                "authorization": {"type": "simple", "acls": strimzi_acl_rules(per_user[user])},
            },
        }
        for user in users_of(tenants)
    )
    return manifests


def _file_name(manifest: Manifest) -> str:
    kind = str(manifest["kind"]).lower()
    return f"{kind}-{manifest['metadata']['name']}.yaml"


def write_manifests(manifests: Iterable[Manifest], out: Path) -> list[Path]:
    """One YAML file per manifest in `out` (made when missing); an earlier render's leftovers are removed."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        for manifest in manifests:
            path = out / _file_name(manifest)
            path.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
            written.append(path)
        # A tenant dropped from the file must lose its topic and user files too, or
        # `kubectl apply -f DIR` would keep granting it; only our own file names are touched.
        for stale in sorted(out.glob("kafka*-*.yaml")):
            if stale not in written and stale.name.startswith(("kafkatopic-", "kafkauser-")):
                stale.unlink()
    except OSError as exc:
        msg = f"cannot write manifests to {out}: {exc.strerror or type(exc).__name__}"
        raise ConfigError(msg) from None
    return written
