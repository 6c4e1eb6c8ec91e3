"""Importing this module registers every sub-command on the root app."""

from . import (
    asyncapi,
    bench,
    broker,
    conformance,
    consumer,
    dashboard,
    demo,
    deploy,
    directory,
    dlq,
    ingress,
    kafka,
    send,
    topics,
    usage,
    validate,
)

__all__ = [
    "asyncapi",
    "bench",
    "broker",
    "conformance",
    "consumer",
    "dashboard",
    "demo",
    "deploy",
    "directory",
    "dlq",
    "ingress",
    "kafka",
    "send",
    "topics",
    "usage",
    "validate",
]
