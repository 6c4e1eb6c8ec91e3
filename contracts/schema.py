"""JSON Schema export, one schema per message type."""

from __future__ import annotations

from typing import Any

from contracts.envelope import MESSAGE_CLASSES
from contracts.messages import MessageType

SCHEMA_ID_PREFIX = "urn:prik:schema:"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_filename(type_: MessageType | str) -> str:
    """The file name a schema is exported under: `<type>.schema.json`."""
    return f"{MessageType(type_).value}.schema.json"


def json_schemas() -> dict[str, dict[str, Any]]:
    """Map each message type to the JSON Schema of its envelope (validation mode)."""
    schemas: dict[str, dict[str, Any]] = {}
    for message_type, cls in MESSAGE_CLASSES.items():
        body = cls.model_json_schema(mode="validation")
        schemas[message_type.value] = {
            "$schema": JSON_SCHEMA_DIALECT,
            "$id": SCHEMA_ID_PREFIX + message_type.value,
            **body,
        }
    return schemas
