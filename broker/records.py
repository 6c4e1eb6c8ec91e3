"""What the router reads and writes, independent of the client that moves it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

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

    @classmethod
    def from_record(cls, record: Any) -> Incoming:  # noqa: ANN401 - aiokafka and FastStream records alike
        headers: Sequence[tuple[str, bytes]] = record.headers or ()
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=tuple((k, bytes(v)) for k, v in headers),
        )


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default=())
