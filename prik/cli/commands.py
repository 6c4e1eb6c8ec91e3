"""Importing this module registers every sub-command on the root app."""

from . import broker, directory, kafka, send, topics, validate

__all__ = ["broker", "directory", "kafka", "send", "topics", "validate"]
