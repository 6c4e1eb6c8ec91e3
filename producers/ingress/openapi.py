"""The ingress's OpenAPI 3.1 document, written by hand to say exactly what `app.py` does.

The event's own rules are prik's JSON Schemas (`prik schema export`); here the
request body names only what every event has, so the document stays readable
and a client generator gets a usable type.
"""

from __future__ import annotations

from typing import Any

from contracts import MessageType, codec, example_messages, to_bytes

__all__ = ["BINARY_ATTRIBUTES", "openapi_document"]

# Attributes a binary-mode request may carry as `ce-<name>` headers (DESIGN.md, Envelope).
BINARY_ATTRIBUTES = (
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "recipient",
    "expiresat",
    "correlationid",
    "priority",
    "subject",
    "datacontenttype",
    "traceparent",
    "tracestate",
    "partitionkey",
)
_REQUIRED_BINARY = ("specversion", "id", "source", "type", "time")

_PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _problem(description: str, *headers: str) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/problem+json": {"schema": _PROBLEM}},
    }
    if headers:
        answer["headers"] = {name: {"$ref": f"#/components/headers/{name}"} for name in headers}
    return answer


def _binary_header(name: str) -> dict[str, Any]:
    required = " (required in binary mode)" if name in _REQUIRED_BINARY else ""
    return {
        "name": f"ce-{name}",
        "in": "header",
        "required": False,
        "description": f"Binary mode: the CloudEvents attribute `{name}`{required}, percent-encoded "
        "where the CloudEvents HTTP binding says so.",
        "schema": {"type": "string"},
    }


def _schemas() -> dict[str, Any]:
    return {
        "CloudEvent": {
            "type": "object",
            "description": "A prik message in CloudEvents structured mode. The full rules of each "
            "type are prik's JSON Schemas (`prik schema export DIR`).",
            "required": ["specversion", "id", "source", "type", "time", "data"],
            "properties": {
                "specversion": {"const": "1.0"},
                "id": {"type": "string", "description": "Unique per source; the dedup key end to end."},
                "source": {"type": "string", "pattern": "^urn:prik:[a-z0-9][a-z0-9-]{1,62}$"},
                "type": {"type": "string", "enum": sorted(t.value for t in MessageType)},
                "time": {"type": "string", "format": "date-time"},
                "recipient": {"type": "string", "pattern": "^[0-9]{11,18}$"},
                "data": {"type": "object"},
            },
        },
        "Accepted": {
            "type": "object",
            "description": "Kafka acknowledged the message (acks=all) on the tenant's ingress topic.",
            "required": ["id", "topic", "partition", "offset"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "string"},
                "topic": {"type": "string"},
                "partition": {"type": "integer", "minimum": 0},
                "offset": {"type": "integer", "minimum": 0},
            },
        },
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details; `detail` never quotes the message's data.",
            "required": ["type", "title", "status", "detail"],
            "additionalProperties": False,
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": {"type": "string"},
                "stage": {
                    "type": "string",
                    "enum": ["parse", "validate", "authenticate", "authorise"],
                    "description": "Which of the router's rules refused it.",
                },
            },
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "additionalProperties": False,
            "properties": {"status": {"type": "string", "enum": ["ok", "stopping"]}},
        },
    }


def _example() -> dict[str, Any]:
    """The contract's video-queue example (without its patient): what minlaege-video would send."""
    event: dict[str, Any] = codec.loads(to_bytes(example_messages()[MessageType.VIDEO_QUEUE]))
    event["data"].pop("patient", None)
    return event


def openapi_document(*, max_bytes: int, rate: float) -> dict[str, Any]:
    """The document `GET /openapi.json` serves, with this ingress's limits written in."""
    post = {
        "operationId": "sendMessage",
        "summary": "Send one prik message (CloudEvents HTTP binding, structured or binary mode)",
        "description": (
            "Structured mode: `Content-Type: application/cloudevents+json` and the whole event as "
            "the body. Binary mode: `ce-*` headers for the attributes and `data` as an "
            "`application/json` body. The same validation as the router's runs before anything "
            "reaches Kafka; on 202 the router routes the message as usual and the sender's receipt "
            f"follows on its replies topic. Bodies over {max_bytes} bytes are refused (413); each "
            f"tenant may send {rate:g} messages a second, with a burst (429)."
        ),
        "security": [{"basic": []}],
        "parameters": [_binary_header(name) for name in BINARY_ATTRIBUTES],
        "requestBody": {
            "required": True,
            "content": {
                "application/cloudevents+json": {
                    "schema": {"$ref": "#/components/schemas/CloudEvent"},
                    "examples": {"video-queue": {"summary": "A video-queue notice", "value": _example()}},
                },
                "application/json": {
                    "schema": {"type": "object", "description": "Binary mode: the event's `data`."}
                },
            },
        },
        "responses": {
            "202": {
                "description": "Kafka acknowledged the message.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Accepted"}}},
            },
            "400": _problem("Not a valid prik message; `detail` says why (the first few reasons)."),
            "401": _problem("No valid HTTP Basic login (tenant id and its password).", "WWW-Authenticate"),
            "403": _problem("The source is not the tenant's own, or the tenant may not send the type."),
            "408": _problem("The body did not arrive in time (30 s)."),
            "413": _problem(f"Over {max_bytes} bytes."),
            "415": _problem("Neither application/cloudevents+json nor binary mode with JSON data."),
            "429": _problem("Over the tenant's rate.", "Retry-After"),
            "503": _problem("Kafka did not acknowledge; send the same message again.", "Retry-After"),
        },
    }
    health = {
        "operationId": "health",
        "summary": "Whether the ingress serves (503 while it shuts down)",
        "responses": {
            "200": {
                "description": "Serving.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}},
            },
            "503": {
                "description": "Shutting down.",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}},
            },
        },
    }
    spec = {
        "operationId": "openapi",
        "summary": "This document",
        "responses": {
            "200": {
                "description": "OpenAPI 3.1",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "prik HTTP ingress",
            "version": "1",
            "description": "For senders without a Kafka client. TLS is a reverse proxy's job.",
        },
        "paths": {"/v1/messages": {"post": post}, "/health": {"get": health}, "/openapi.json": {"get": spec}},
        "components": {
            "securitySchemes": {
                "basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "User: the tenant id. Password: the tenant's `DIR/<id>.password`.",
                }
            },
            "schemas": _schemas(),
            "headers": {
                "WWW-Authenticate": {"schema": {"type": "string"}},
                "Retry-After": {"schema": {"type": "string", "pattern": "^[0-9]+$"}},
            },
        },
    }
