"""Importing this module registers every sub-command on the root app."""

from . import (
    asyncapi,
    bench,
    broker,
    consumer,
    dashboard,
    demo,
    deploy,
    directory,
    dlq,
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
    "consumer",
    "dashboard",
    "demo",
    "deploy",
    "directory",
    "dlq",
    "kafka",
    "send",
    "topics",
    "usage",
    "validate",
]
