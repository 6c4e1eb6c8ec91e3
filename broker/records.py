"""What the router reads and writes, independent of the client that moves it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contracts.headers import normalise_headers

__all__ = ["Headers", "Incoming", "Outgoing"]

Headers = tuple[tuple[str, bytes], ...]
_BYTES_LIKE = (bytes, bytearray, memoryview)


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
        # bytes, what aiokafka hands over, are kept as they are: no isinstance against a union per record.
        if type(key) is not bytes:
            key = bytes(key) if isinstance(key, _BYTES_LIKE) else None
        if type(value) is not bytes:
            value = bytes(value) if isinstance(value, _BYTES_LIKE) else None
        return cls(
            record.topic,
            record.partition,
            record.offset,
            key,
            value,
            normalise_headers(record.headers),
            getattr(record, "unreadable", None),
        )


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default=())
