"""deploy/k8s/ and `prik deploy render`: valid for Kubernetes and for Strimzi, and exactly DESIGN.md's ACLs.

Core kinds are checked by `kubernetes-validate` (the API's own OpenAPI schemas,
strict: an unknown field fails); Strimzi's kinds by the `openAPIV3Schema` of
Strimzi's CRDs (tests/data/strimzi/), made strict the same way, since the API
server would drop an unknown field silently and the operator never see it.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]  # ships no type information
import pytest
import yaml
from typer.testing import CliRunner

from contracts import ConfigError, Topics
from contracts.tenants import Tenants
from deploy.acls import Acl, acl_table
from deploy.render import render_manifests
from deploy.topics import topic_specs
from prik.cli import commands  # noqa: F401  registers `prik deploy` on the app
from prik.cli.app import app
from prik.tenants import load_tenants
from tests.unit.test_deploy_compose import setting_names

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
STRIMZI = ROOT / "tests" / "data" / "strimzi"
TENANTS = ROOT / "deploy" / "tenants.example.toml"
# The Kubernetes release the manifests are checked against; kubernetes-validate ships each release's schemas.
KUBERNETES_VERSION = "1.33.0"
STRIMZI_KINDS = ("Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser")

Manifest = dict[str, Any]


def _strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever it lists the fields and does not keep unknown ones."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items()}
    keeps_unknown = schema.get("x-kubernetes-preserve-unknown-fields") is True
    if "properties" in schema and "additionalProperties" not in schema and not keeps_unknown:
        out["additionalProperties"] = False
    return out


def _validators() -> dict[str, jsonschema.Draft7Validator]:
    validators = {}
    for path in sorted(STRIMZI.glob("*.v1.schema.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        validators[data["kind"]] = jsonschema.Draft7Validator(_strict(data["openAPIV3Schema"]))
    return validators


VALIDATORS = _validators()


def check(manifest: Manifest) -> None:
    """Fails on a manifest Kubernetes or Strimzi would refuse or silently trim."""
    if manifest["kind"] in STRIMZI_KINDS:
        assert manifest["apiVersion"] == "kafka.strimzi.io/v1"
        errors = [
            f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in VALIDATORS[manifest["kind"]].iter_errors(manifest)
        ]
        assert not errors, f"{manifest['kind']} {manifest['metadata']['name']}: {errors}"
    else:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def k8s_manifests() -> list[Manifest]:
    return [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if doc is not None
    ]


def by_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def test_the_strimzi_schemas_are_there_and_strict() -> None:
    assert set(VALIDATORS) == set(STRIMZI_KINDS)
    user = {"apiVersion": "kafka.strimzi.io/v1", "kind": "KafkaUser", "metadata": {"name": "x"}}
    assert not list(
        VALIDATORS["KafkaUser"].iter_errors({**user, "spec": {"authentication": {"type": "scram-sha-512"}}})
    )
    # A misspelt field and a wrong value are both caught.
    assert list(VALIDATORS["KafkaUser"].iter_errors({**user, "spec": {"authentcation": {}}}))
    assert list(VALIDATORS["KafkaUser"].iter_errors({**user, "spec": {"authentication": {"type": "scram"}}}))


def test_kubernetes_validate_refuses_an_unknown_field() -> None:
    bad = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "datum": {}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("manifest", k8s_manifests(), ids=lambda m: f"{m['kind']}-{m['metadata']['name']}")
def test_every_k8s_manifest_is_valid(manifest: Manifest) -> None:
    check(manifest)


def test_the_kafka_cluster_is_three_kraft_nodes_with_scram_over_tls_and_acls() -> None:
    manifests = k8s_manifests()
    (pool,) = by_kind(manifests, "KafkaNodePool")
    (kafka,) = by_kind(manifests, "Kafka")
    assert pool["spec"]["replicas"] == 3
    assert sorted(pool["spec"]["roles"]) == ["broker", "controller"]
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"] == "prik"
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert listener["tls"] is True
    assert listener["authentication"] == {"type": "scram-sha-512"}
    assert kafka["spec"]["kafka"]["authorization"] == {"type": "simple", "superUsers": ["admin"]}
    config = kafka["spec"]["kafka"]["config"]
    assert (
        config["transaction.state.log.replication.factor"] == config["offsets.topic.replication.factor"] == 3
    )
    assert config["transaction.state.log.min.isr"] == config["min.insync.replicas"] == 2


def _containers(manifests: list[Manifest]) -> Iterator[tuple[Manifest, Manifest]]:
    for workload in by_kind(manifests, "Deployment") + by_kind(manifests, "Job"):
        for container in workload["spec"]["template"]["spec"]["containers"]:
            yield workload, container


def test_deployments_router_and_a_consumer_per_lps_with_health_probes() -> None:
    manifests = k8s_manifests()
    deployments = {d["metadata"]["name"]: d for d in by_kind(manifests, "Deployment")}
    lps = load_tenants(TENANTS).lps_ids
    assert set(deployments) == {"prik-router"} | {f"prik-consumer-{x}" for x in lps}
    assert deployments["prik-router"]["spec"]["replicas"] == 2
    for deployment in deployments.values():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            assert get["path"] == "/health"
            assert get["port"] in ports
    for x in lps:
        args = deployments[f"prik-consumer-{x}"]["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[:4] == ["consumer", "run", "--lps", x]
        assert args[args.index("--http-host") + 1] == "0.0.0.0"  # noqa: S104 - probes and Prometheus reach it


def test_a_disruption_budget_for_every_deployment_and_a_network_policy() -> None:
    manifests = k8s_manifests()
    budgets = [b["spec"]["selector"]["matchLabels"] for b in by_kind(manifests, "PodDisruptionBudget")]
    for deployment in by_kind(manifests, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert any(selector.items() <= labels.items() for selector in budgets), deployment["metadata"]["name"]
    policies = by_kind(manifests, "NetworkPolicy")
    assert any(set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"} for p in policies)


def test_settings_are_prik_settings_and_secrets_are_referenced_not_embedded() -> None:
    manifests = k8s_manifests()
    assert not by_kind(manifests, "Secret")
    names = setting_names()
    secret_names = set()
    for workload, container in _containers(manifests):
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert set(env) <= names, f"{workload['metadata']['name']}: {sorted(set(env) - names)}"
        # Passwords and keys come from mounted Secrets, by file.
        assert "PRIK_KAFKA__PASSWORD" not in env
        assert "PRIK_ROUTE_KEY" not in env
        assert env["PRIK_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["PRIK_KAFKA__PASSWORD_FILE"].startswith("/etc/prik/")
        volumes = workload["spec"]["template"]["spec"]["volumes"]
        secret_names |= {v["secret"]["secretName"] for v in volumes if "secret" in v}
        if workload["metadata"]["name"] == "prik-router":
            assert env["PRIK_ROUTE_KEY_FILE"] == "/etc/prik/route-key/route.key"
    assert {"router", "prik-route-key", "prik-cluster-ca-cert", "admin"} <= secret_names


def test_the_tenants_config_map_is_the_example_tenants_file() -> None:
    (config_map,) = [
        m for m in by_kind(k8s_manifests(), "ConfigMap") if m["metadata"]["name"] == "prik-tenants"
    ]
    shipped = tomllib.loads(config_map["data"]["tenants.toml"])
    assert shipped == tomllib.loads(TENANTS.read_text(encoding="utf-8"))


# -- prik deploy render ----------------------------------------------------------

_KINDS = {"topic": "TOPIC", "group": "GROUP", "transactionalId": "TRANSACTIONAL_ID"}
_PATTERNS = {"literal": "LITERAL", "prefix": "PREFIXED"}


def granted(user: Manifest) -> set[Acl]:
    """The ACL entries a KafkaUser grants, read the way Strimzi's user operator reads them."""
    principal = f"User:{user['metadata']['name']}"
    return {
        Acl(
            principal,
            _KINDS[rule["resource"]["type"]],
            rule["resource"]["name"],
            _PATTERNS[rule["resource"]["patternType"]],
            operation.upper(),
            rule["host"],
        )
        for rule in user["spec"]["authorization"]["acls"]
        for operation in rule["operations"]
    }


@pytest.fixture(scope="module")
def tenants() -> Tenants:
    return load_tenants(TENANTS)


@pytest.mark.parametrize("prefix", ["prik", "acme_Prik-2"])
def test_rendered_manifests_are_valid_and_exactly_the_table(tenants: Tenants, prefix: str) -> None:
    topics = Topics(prefix)
    manifests = render_manifests(topics, tenants)
    for manifest in manifests:
        check(manifest)
        assert manifest["metadata"]["labels"]["strimzi.io/cluster"] == "prik"
    rendered_topics = {m["spec"]["topicName"]: m["spec"] for m in by_kind(manifests, "KafkaTopic")}
    specs = {s.name: s for s in topic_specs(topics, tenants, 3)}
    assert set(rendered_topics) == set(specs)
    for name, spec in rendered_topics.items():
        assert spec["partitions"] == specs[name].partitions
        assert spec["replicas"] == 3
        assert spec["config"] == dict(specs[name].configs)
        assert spec["config"]["min.insync.replicas"] == "2"
    users = by_kind(manifests, "KafkaUser")
    assert sorted(u["metadata"]["name"] for u in users) == sorted([*tenants.ids, "router"])
    for user in users:
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert user["spec"]["authorization"]["type"] == "simple"
    # The same table the secure tier's ACL matrix runs against on a real broker.
    assert set().union(*(granted(u) for u in users)) == acl_table(topics, tenants)


def test_a_topic_name_kubernetes_cannot_take_gets_an_object_name_it_can(tenants: Tenants) -> None:
    for manifest in render_manifests(Topics("acme_Prik-2"), tenants):
        assert re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", manifest["metadata"]["name"])


def test_prik_deploy_render_writes_a_file_per_object_and_drops_a_gone_tenant(tmp_path: Path) -> None:
    out = tmp_path / "rendered"
    runner = CliRunner()
    result = runner.invoke(app, ["deploy", "render", "--tenants", str(TENANTS), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "15 KafkaTopic, 6 KafkaUser" in result.output
    files = sorted(out.glob("*.yaml"))
    assert len(files) == 21
    for path in files:
        (manifest,) = yaml.safe_load_all(path.read_text(encoding="utf-8"))
        check(manifest)
    assert (out / "kafkauser-lps-novax.yaml").exists()

    fewer = tmp_path / "tenants.toml"
    text = TENANTS.read_text(encoding="utf-8")
    fewer.write_text(text[: text.index('[[tenant]]\nid = "lps-novax"')], encoding="utf-8")
    (out / "notes.yaml").write_text("kept: true\n", encoding="utf-8")
    result = runner.invoke(app, ["deploy", "render", "--tenants", str(fewer), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert not (out / "kafkauser-lps-novax.yaml").exists()
    assert not (out / "kafkatopic-prik.deliver.lps-novax.yaml").exists()
    assert (out / "notes.yaml").exists(), "a file prik did not write is left alone"


def test_prik_deploy_render_refuses_a_bad_tenants_file_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "tenants.toml"
    bad.write_text('[[tenant]]\nid = "admin"\nrole = "producer"\n', encoding="utf-8")
    result = CliRunner().invoke(
        app, ["deploy", "render", "--tenants", str(bad), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code != 0
    # `prik`'s entry point turns it into one line and exit 2 (prik.cli.app.main).
    assert isinstance(result.exception, ConfigError)
    assert "\n" not in str(result.exception)
    assert "reserved" in str(result.exception)
