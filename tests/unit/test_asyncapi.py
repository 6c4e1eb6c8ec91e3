"""`prik asyncapi export`: valid against the official AsyncAPI 3.0.0 schema, and true to the code.

The schema is `@asyncapi/specs`' own (tests/data/asyncapi/, see its README), read
offline. What the document must cover is read off the code, never listed here: topic
families from `contracts.topics` and `deploy.topics.topic_specs`, message types from
`contracts.MessageType`, keys from `producers.key_of`, headers from `contracts.headers`
and `consumers.sign_headers`.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator, Draft202012Validator
from jsonschema.exceptions import best_match

import contracts.topics
from consumers import generate_secret, make_webhook, sign_headers
from consumers.deliverers import _RETRY_4XX  # the consumer's own list of 4xx it retries
from contracts import (
    ErrorStage,
    MessageType,
    Topics,
    codec,
    example_messages,
    json_schemas,
    parse_tenants,
    to_bytes,
)
from contracts import headers as h
from contracts.examples import EXAMPLE_CLINIC_SOR
from deploy.render import REPLICATION
from deploy.topics import topic_specs
from prik.asyncapi import WEBHOOK_CHANNEL, build_asyncapi
from prik.settings import KafkaSettings
from producers.keys import key_of

SPEC_DIR = Path(__file__).parents[1] / "data" / "asyncapi"
TENANTS = Path(__file__).parents[2] / "deploy" / "tenants.example.toml"
Doc = dict[str, Any]


@cache
def _validator() -> Draft7Validator:
    schema = json.loads((SPEC_DIR / "3.0.0.json").read_text(encoding="utf-8"))
    Draft7Validator.check_schema(schema)
    # Every $ref of the official schema points into its own bundled `definitions` (each
    # with its `$id`), so nothing is fetched: an unknown reference fails the test.
    return Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)


def _problems(document: Doc) -> list[str]:
    errors = list(_validator().iter_errors(document))
    if not errors:
        return []
    worst = best_match(errors)
    return [f"{'/'.join(map(str, worst.absolute_path))}: {worst.message[:300]}", f"{len(errors)} errors"]


@pytest.fixture(scope="module")
def doc() -> Doc:
    return build_asyncapi()


def _pointer(document: Doc, ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _deref(document: Doc, node: Any) -> Any:
    while isinstance(node, dict) and set(node) == {"$ref"}:
        node = _pointer(document, node["$ref"])
    return node


def _inline(node: Any, lookup: Any) -> Any:
    """`node` with every local `$ref` replaced by what it names (sibling keywords kept)."""
    if isinstance(node, dict):
        out = {k: _inline(v, lookup) for k, v in node.items() if k != "$ref"}
        if "$ref" in node:
            out = {**_inline(lookup(node["$ref"]), lookup), **out}
        return out
    if isinstance(node, list):
        return [_inline(v, lookup) for v in node]
    return node


def _kafka_channels(doc: Doc) -> dict[str, Doc]:
    return {name: ch for name, ch in doc["channels"].items() if "kafka" in ch.get("bindings", {})}


def _channel_payload_types(doc: Doc, channel: str) -> set[str]:
    found: set[str] = set()
    for ref in doc["channels"][channel]["messages"].values():
        payload = _deref(doc, ref)["payload"]
        if set(payload) == {"$ref"}:
            found.add(payload["$ref"].rsplit("/", 1)[-1])
    return found


# --- the official schema --------------------------------------------------------------------------


def test_the_document_is_valid_asyncapi_3_0_0(doc: Doc) -> None:
    assert doc["asyncapi"] == "3.0.0"
    assert _problems(doc) == []


@pytest.mark.parametrize(
    ("where", "bad"),
    [
        (("channels", "dlq", "bindings", "kafka", "partitions"), 0),
        (("channels", "directory", "bindings", "kafka", "topicConfiguration", "cleanup.policy"), "compact"),
        (("operations", "tenant.send.ingress", "action"), "publish"),
        (("components", "securitySchemes", "scramSha512", "type"), "scram"),
    ],
)
def test_the_official_schema_is_in_force(doc: Doc, where: tuple[str, ...], bad: object) -> None:
    broken = copy.deepcopy(doc)
    node = broken
    for part in where[:-1]:
        node = node[part]
    node[where[-1]] = bad
    assert _problems(broken) != []


# --- topics: every family, with the values `prik topics apply` uses ------------------------------


def _address_re(address: str, prefix: str) -> re.Pattern[str]:
    pattern = re.escape(address).replace(re.escape("{prefix}"), re.escape(prefix))
    for parameter in ("tenant", "lps"):
        pattern = pattern.replace(re.escape(f"{{{parameter}}}"), "[a-z0-9][a-z0-9-]{1,62}")
    return re.compile(pattern)


def _configs_as_kafka_has_them(binding: Doc) -> dict[str, str]:
    return {
        k: ",".join(v) if isinstance(v, list) else str(v) for k, v in binding["topicConfiguration"].items()
    }


def test_every_topic_prik_provisions_is_one_channel_with_its_real_settings(doc: Doc) -> None:
    tenants = parse_tenants(TENANTS.read_text(encoding="utf-8"))
    specs = topic_specs(Topics(prefix="prik"), tenants, REPLICATION)
    channels = _kafka_channels(doc)
    used: set[str] = set()
    for spec in specs:
        matching = [
            n for n, ch in channels.items() if _address_re(ch["address"], "prik").fullmatch(spec.name)
        ]
        assert len(matching) == 1, spec.name
        binding = channels[matching[0]]["bindings"]["kafka"]
        assert binding["bindingVersion"] == "0.5.0"
        assert binding["partitions"] == spec.partitions, spec.name
        assert binding["replicas"] == REPLICATION
        assert _configs_as_kafka_has_them(binding) == dict(spec.configs), spec.name
        assert _address_re(binding["topic"], "prik").fullmatch(spec.name)
        used.add(matching[0])
    assert used == set(channels), "a Kafka channel that no provisioned topic matches"


def test_every_topic_name_in_contracts_topics_has_a_channel(doc: Doc) -> None:
    names = {
        value
        for name, value in vars(contracts.topics).items()
        if isinstance(value, str) and name.endswith(("_TOPIC", "_PREFIX"))
        if value.startswith("prik.")
    }
    assert names, "contracts.topics names no topics"
    addresses = [ch["address"].replace("{prefix}", "prik") for ch in _kafka_channels(doc).values()]
    for name in names:
        if name.endswith("."):
            assert any(a.startswith(name) and a[len(name) :] in {"{tenant}", "{lps}"} for a in addresses), (
                name
            )
        else:
            assert name in addresses, name
    assert {p for ch in _kafka_channels(doc).values() for p in ch["parameters"]} == {
        "prefix",
        "tenant",
        "lps",
    }


def test_the_prefix_is_a_parameter_and_bindings_name_the_topics_under_it() -> None:
    acme = build_asyncapi(prefix="acme")
    assert acme["components"]["parameters"]["prefix"]["default"] == "acme"
    assert acme["channels"]["dlq"]["bindings"]["kafka"]["topic"] == "acme.dlq"
    assert acme["channels"]["ingress"]["address"] == "{prefix}.ingress.{tenant}"
    assert _problems(acme) == []


# --- messages: every type, with its schema, key and headers ---------------------------------------


def _component_lookup(doc: Doc) -> Any:
    return lambda ref: _pointer(doc, ref)


def test_every_message_type_carries_exactly_the_schema_prik_schema_export_writes(doc: Doc) -> None:
    schemas = doc["components"]["schemas"]
    for type_, exported in json_schemas().items():
        document = {k: v for k, v in exported.items() if k not in {"$schema", "$id"}}
        expected = _inline(document, lambda ref, d=exported: d["$defs"][ref.removeprefix("#/$defs/")])
        expected.pop("$defs")
        assert _inline(schemas[type_], _component_lookup(doc)) == expected, type_


def test_message_types_sit_on_the_channels_that_carry_them(doc: Doc) -> None:
    every = {t.value for t in MessageType}
    assert _channel_payload_types(doc, "ingress") == every
    delivered = _channel_payload_types(doc, "deliver")
    assert delivered == every - {MessageType.RECEIPT.value}
    assert _channel_payload_types(doc, WEBHOOK_CHANNEL) == delivered
    assert _channel_payload_types(doc, "replies") == {
        MessageType.RECEIPT.value,
        MessageType.TASK_STATUS.value,
    }
    for channel, record in {"tasks": "prik.task-record", "directory": "prik.directory-entry"}.items():
        (message,) = (_deref(doc, ref) for ref in doc["channels"][channel]["messages"].values())
        assert record in json.dumps(message["payload"])


def _validates(doc: Doc, schema: Any, instance: Any) -> bool:
    root = {"$schema": "https://json-schema.org/draft/2020-12/schema", "components": doc["components"]}
    validator = Draft202012Validator(
        {**root, "allOf": [schema]}, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    return validator.is_valid(instance)


def test_examples_validate_against_their_schemas_and_a_broken_one_does_not(doc: Doc) -> None:
    for msg_id, message in doc["components"]["messages"].items():
        for example in message.get("examples", []):
            assert _validates(doc, message["payload"], example["payload"]), msg_id
    video = codec.loads(to_bytes(example_messages()[MessageType.VIDEO_QUEUE]))
    schema = {"$ref": f"#/components/schemas/{MessageType.VIDEO_QUEUE.value}"}
    assert _validates(doc, schema, video)
    assert not _validates(doc, schema, {**video, "recipient": "12"})


def _kafka_messages(doc: Doc, channel: str) -> Iterator[tuple[str, Doc]]:
    for name, ref in doc["channels"][channel]["messages"].items():
        yield name, _deref(doc, ref)


def test_kafka_keys_are_what_producers_and_the_router_key_by(doc: Doc) -> None:
    examples = example_messages()
    for channel in ("ingress", "replies"):
        for name, message in _kafka_messages(doc, channel):
            key = key_of(examples[MessageType(name)])
            assert _validates(doc, message["bindings"]["kafka"]["key"], key), (channel, name)
    for _, message in _kafka_messages(doc, "deliver"):
        # Deliveries are keyed by the clinic, task statuses included (the router names it).
        assert _validates(doc, message["bindings"]["kafka"]["key"], EXAMPLE_CLINIC_SOR)
        # A task id is no clinic SOR: the delivery key schema tells them apart.
        assert not _validates(
            doc, message["bindings"]["kafka"]["key"], "3b0f7c2e-6a51-4d0e-9c1a-0d6f2b7e4a11"
        )


def test_headers_are_the_ones_prik_writes(doc: Doc) -> None:
    (dead_letter,) = (m for _, m in _kafka_messages(doc, "dlq"))
    headers = _deref(doc, dead_letter["headers"])
    error_headers = {v for k, v in vars(h).items() if k.startswith(("ERROR_", "ORIGINAL_"))}
    assert set(headers["required"]) == error_headers
    assert headers["properties"][h.ERROR_STAGE]["enum"] == [s.value for s in ErrorStage]
    for _, message in _kafka_messages(doc, "deliver"):
        assert h.ROUTE in _deref(doc, message["headers"])["required"]
    receipt = _deref(doc, doc["channels"]["ingress"]["messages"][MessageType.RECEIPT.value])
    assert h.ROUTE in _deref(doc, receipt["headers"])["properties"]


def test_webhook_is_an_http_post_whose_signed_headers_match_the_schema(doc: Doc) -> None:
    signed = {
        **sign_headers([make_webhook(generate_secret()), make_webhook(generate_secret())], "m-1", b"{}"),
        "content-type": "application/json",
    }
    for _, message in _kafka_messages(doc, WEBHOOK_CHANNEL):
        assert message["bindings"]["http"]["bindingVersion"] == "0.3.0"
        for schema in (message["headers"], message["bindings"]["http"]["headers"]):
            assert _validates(doc, schema, signed)
            assert not _validates(doc, schema, {**signed, "webhook-signature": "v2,nope"})
    sends = [
        op for op in doc["operations"].values() if op["channel"]["$ref"] == f"#/channels/{WEBHOOK_CHANNEL}"
    ]
    assert {op["action"] for op in sends} == {"send", "receive"}
    assert all(op["bindings"]["http"]["method"] == "POST" for op in sends)
    assert doc["servers"]["lps-webhook"]["protocol"] == "https"
    # The answers the consumer retries, as the description promises an LPS.
    retried = doc["channels"][WEBHOOK_CHANNEL]["description"].split("retried")[0].rsplit(";", 1)[-1]
    for status in (*(str(s) for s in sorted(_RETRY_4XX)), "3xx", "5xx", "15 s"):
        assert status in retried


def test_servers_and_operations(doc: Doc) -> None:
    production, development = doc["servers"]["production"], doc["servers"]["development"]
    assert _deref(doc, production["security"][0])["type"] == "scramSha512"
    assert development["protocol"] == "kafka"
    assert development["host"] == KafkaSettings.model_fields["bootstrap"].default
    for channel_name, channel in doc["channels"].items():
        ops = [
            op for op in doc["operations"].values() if op["channel"]["$ref"] == f"#/channels/{channel_name}"
        ]
        assert {op["action"] for op in ops} == {"send", "receive"}, channel_name
        assert all(op["x-prik-actor"] for op in ops)
        for op in ops:
            for ref in op["messages"]:
                assert ref["$ref"].startswith(f"#/channels/{channel_name}/messages/")
                assert _pointer(doc, ref["$ref"]) in channel["messages"].values()


# --- the command line -----------------------------------------------------------------------------


def _prik(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith("PRIK_")}
    return subprocess.run(
        [sys.executable, "-m", "prik", "asyncapi", "export", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**base, **(env or {})},
    )


def test_cli_writes_json_and_yaml_that_validate(tmp_path: Path) -> None:
    as_json, as_yaml = tmp_path / "prik.asyncapi.json", tmp_path / "prik.asyncapi.yml"
    for path in (as_json, as_yaml):
        done = _prik(str(path), env={"PRIK_TOPIC_PREFIX": "acme"})
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        assert done.stdout.startswith(f"wrote {path}: AsyncAPI 3.0.0")
    written = json.loads(as_json.read_text(encoding="utf-8"))
    assert _problems(written) == []
    assert written["channels"]["tasks"]["bindings"]["kafka"]["topic"] == "acme.tasks"
    assert yaml.safe_load(as_yaml.read_text(encoding="utf-8")) == written == build_asyncapi(prefix="acme")


def test_cli_refuses_an_unwritable_path_and_an_unknown_suffix_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "x.yaml"
    done = _prik(str(missing))
    assert done.returncode == 1
    assert done.stderr == f"prik: error: {missing}: cannot write: No such file or directory\n"
    assert not missing.exists()
    done = _prik(str(tmp_path / "x.txt"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("prik: error: ")
