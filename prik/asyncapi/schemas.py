"""The schemas an AsyncAPI document of prik holds under `components/schemas`, all derived from code.

Message payloads are the JSON Schemas of `prik schema export` (`contracts.json_schemas`).
Each is a self-contained JSON Schema 2020-12 document whose `$ref`s point into its own
`$defs`; AsyncAPI tooling resolves `#/...` against the whole AsyncAPI document, so the
`$defs` move to `components/schemas` and the references follow them. Nothing else
changes: inlining the references again gives back exactly what `prik schema export` writes.
"""

from __future__ import annotations

import copy
from typing import Any
from uuid import UUID

from pydantic import BaseModel, TypeAdapter

from contracts import STRUCTURED_CONTENT_TYPE, ErrorStage, Sor, json_schemas
from contracts import headers as h
from contracts.directory import DirectoryEntry

__all__ = [
    "COMPONENT_SCHEMAS",
    "DEFS_REF",
    "SchemaBook",
    "dead_letter_headers_schema",
    "kafka_headers_schema",
    "key_schemas",
    "schema_ref",
    "webhook_headers_schema",
]

Schema = dict[str, Any]
COMPONENT_SCHEMAS = "#/components/schemas/"
DEFS_REF = "#/$defs/"
# Keywords of a JSON Schema *document*, not of the schema: the AsyncAPI document is the document.
_DOCUMENT_KEYWORDS = ("$schema", "$id")


def schema_ref(name: str) -> Schema:
    return {"$ref": COMPONENT_SCHEMAS + name}


def _rewrite_refs(node: object) -> object:
    if isinstance(node, dict):
        out = {k: _rewrite_refs(v) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith(DEFS_REF):
            out["$ref"] = COMPONENT_SCHEMAS + ref.removeprefix(DEFS_REF)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


def _rewritten(schema: Schema) -> Schema:
    out = _rewrite_refs(schema)
    if not isinstance(out, dict):  # pragma: no cover - a dict rewrites to a dict
        raise TypeError(type(out).__name__)
    return out


class SchemaBook:
    """`components/schemas` under construction: adds schemas, hoists their `$defs`, refuses clashes."""

    def __init__(self) -> None:
        self.schemas: dict[str, Schema] = {}

    def put(self, name: str, schema: Schema) -> Schema:
        """Add `schema` as `name` (same content twice is fine) and return a reference to it."""
        present = self.schemas.get(name)
        if present is not None and present != schema:
            msg = f"two different schemas are both named {name}"
            raise ValueError(msg)
        self.schemas[name] = schema
        return schema_ref(name)

    def put_json_schema(self, name: str, document: Schema) -> Schema:
        """Add a JSON Schema document (pydantic's or `prik schema export`'s), its `$defs` beside it."""
        body = copy.deepcopy(document)
        for keyword in _DOCUMENT_KEYWORDS:
            body.pop(keyword, None)
        for def_name, definition in body.pop("$defs", {}).items():
            self.put(def_name, _rewritten(definition))
        return self.put(name, _rewritten(body))

    def put_model(self, name: str, model: type[BaseModel], *, drop: tuple[str, ...] = ()) -> Schema:
        """Add a pydantic model's schema; `drop` leaves out fields that travel elsewhere (the key)."""
        schema = model.model_json_schema(mode="validation")
        for field in drop:
            schema.get("properties", {}).pop(field, None)
            if field in schema.get("required", []):
                schema["required"] = [r for r in schema["required"] if r != field]
        return self.put_json_schema(name, schema)

    def put_message_types(self) -> dict[str, Schema]:
        """Every message type's envelope schema, named by its type; a reference to each."""
        return {type_: self.put_json_schema(type_, doc) for type_, doc in json_schemas().items()}

    def put_directory_value(self) -> Schema:
        """The value of a directory record: the entry without its SOR (the SOR is the key)."""
        return self.put_model("prik.directory-entry", DirectoryEntry, drop=("sor",))


def _plain(schema: Schema, description: str) -> Schema:
    schema = {k: v for k, v in schema.items() if k != "title"}
    return {**schema, "description": description}


def key_schemas() -> dict[str, Schema]:
    """The Kafka record keys prik uses, by what they are (UTF-8 text on the wire)."""
    message_id = json_schemas()[next(iter(json_schemas()))]["properties"]["id"]
    return {
        "sor": _plain(TypeAdapter(Sor).json_schema(), "The clinic's SOR code."),
        "task-id": _plain(TypeAdapter(UUID).json_schema(), "The task's `task_id`."),
        "message-id": _plain(message_id, "The `id` of the message a receipt is about."),
        "original": {"description": "The failed record's own key, unchanged; may be absent."},
    }


def _header(description: str, **schema: object) -> Schema:
    return {"type": "string", "description": description, **schema}


_CONTENT_TYPE = _header(
    "Structured CloudEvents (ingress also accepts binary mode: `ce_*` headers instead).",
    const=STRUCTURED_CONTENT_TYPE,
)
_ROUTE = _header(
    "The router's proof that it delivered this message to this LPS (an HMAC over message id, "
    "source and LPS); the LPS's consumer echoes it on its receipt."
)


def kafka_headers_schema(*, route: bool) -> Schema:
    """Record headers of an envelope on Kafka; `route`: with `prik-route` (deliveries, LPS receipts)."""
    properties: Schema = {h.CONTENT_TYPE: _CONTENT_TYPE}
    required: list[str] = []
    if route:
        properties[h.ROUTE] = _ROUTE
        required.append(h.ROUTE)
    return {"type": "object", "properties": properties, "required": required}


def dead_letter_headers_schema() -> Schema:
    """Headers of a dead letter: where and why it failed, and where the original record is."""
    digits = {"pattern": "^[0-9]+$"}
    return {
        "type": "object",
        "description": "The original record's own headers are kept beside these.",
        "properties": {
            h.ERROR_STAGE: _header("Where it failed.", enum=[s.value for s in ErrorStage]),
            h.ERROR_REASON: _header("Why, in one line; never patient data."),
            h.ORIGINAL_TOPIC: _header("The topic the original record is on."),
            h.ORIGINAL_PARTITION: _header("Its partition.", **digits),
            h.ORIGINAL_OFFSET: _header("Its offset: `prik dlq replay` re-reads it from there.", **digits),
        },
        "required": [
            h.ERROR_STAGE,
            h.ERROR_REASON,
            h.ORIGINAL_TOPIC,
            h.ORIGINAL_PARTITION,
            h.ORIGINAL_OFFSET,
        ],
    }


def webhook_headers_schema() -> Schema:
    """Standard Webhooks headers of a delivery POSTed to an LPS."""
    signature = r"^v1,[A-Za-z0-9+/]+={0,2}( v1,[A-Za-z0-9+/]+={0,2})*$"
    return {
        "type": "object",
        "properties": {
            "webhook-id": _header("The envelope `id`: stable across retries, so the LPS drops duplicates."),
            "webhook-timestamp": _header(
                "Unix seconds of this attempt; refuse one more than 5 minutes off.", pattern="^[0-9]+$"
            ),
            "webhook-signature": _header(
                'Space-separated `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, one per active '
                "secret (`whsec_<base64>`) during a rotation.",
                pattern=signature,
            ),
            "content-type": _header("The body is the envelope JSON.", const="application/json"),
            "traceparent": _header("W3C Trace Context of the sender's trace, when the envelope has one."),
            "tracestate": _header("W3C Trace Context vendor state, with `traceparent`."),
        },
        "required": ["webhook-id", "webhook-timestamp", "webhook-signature", "content-type"],
    }
