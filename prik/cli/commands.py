"""Importing this module registers every sub-command on the root app."""

from . import broker, consumer, directory, dlq, kafka, send, topics, validate

__all__ = ["broker", "consumer", "directory", "dlq", "kafka", "send", "topics", "validate"]
