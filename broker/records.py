"""What the router reads and writes, independent of the client that moves it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contracts.headers import normalise_headers

__all__ = ["Headers", "Incoming", "Outgoing"]

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    # Why the client could not read this record's headers (see prik/quarantine.py), if it could not.
    unreadable: str | None = None

    @classmethod
    def from_record(cls, record: Any) -> Incoming:  # noqa: ANN401 - aiokafka and FastStream records alike
        """As the client handed it over: null header values count as absent, odd keys and values as none."""
        key, value = record.key, record.value
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=bytes(key) if isinstance(key, bytes | bytearray | memoryview) else None,
            value=bytes(value) if isinstance(value, bytes | bytearray | memoryview) else None,
            headers=normalise_headers(record.headers),
            unreadable=getattr(record, "unreadable", None),
        )


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default=())
