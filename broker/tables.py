"""In-memory views of the compacted topics the router decides by.

A table is fed record by record (by `CompactedReader`, or by a FastStream
subscriber in the in-memory tier). A value that does not decode is skipped and
logged by key: an operator's typo must not stop routing for everyone.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Generic, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, ValidationError

from contracts import ParseError, Sor, TaskStatus, TenantId, UtcDatetime, codec
from contracts.directory import DirectoryEntry
from prik.logs import get_logger

__all__ = ["DirectoryTable", "Table", "TaskRecord", "TaskTable"]

V = TypeVar("V")
_log = get_logger(__name__)


class TaskRecord(BaseModel):
    """The latest state of one task, as kept in the tasks topic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task_id: UUID
    requester: TenantId
    lps: TenantId
    recipient: Sor
    status: TaskStatus
    request_id: str
    updated_at: UtcDatetime
    # Counts the task's moves: the order of its records, whatever the clocks of the
    # router instances that wrote them (ownership moves between instances).
    version: int = 0

    def to_bytes(self) -> bytes:
        return codec.dumps(self.model_dump(mode="json"))

    def moved(self, status: TaskStatus, at: datetime) -> TaskRecord:
        return self.model_copy(update={"status": status, "updated_at": at, "version": self.version + 1})


class Table(Generic[V]):
    def __init__(self, name: str, decode: Callable[[str, bytes], V]) -> None:
        self.name = name
        self._decode = decode
        self._rows: dict[str, V] = {}

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        k = key.decode("utf-8", "replace")
        if value is None:
            self._rows.pop(k, None)
            return
        try:
            row = self._decode(k, value)
        except (ParseError, ValidationError, ValueError, TypeError):
            _log.warning("table.bad_value", table=self.name, key=k)
            return
        if self._accept(self._rows.get(k), row):
            self._rows[k] = row

    def _accept(self, current: V | None, new: V) -> bool:
        """Whether a record read from the topic may replace what the table holds."""
        return True

    def put(self, key: str, value: V) -> None:
        self._rows[key] = value

    def get(self, key: str) -> V | None:
        return self._rows.get(key)

    def __len__(self) -> int:
        return len(self._rows)


def _decode_directory(key: str, value: bytes) -> DirectoryEntry:
    raw = codec.loads(value)
    if not isinstance(raw, dict):
        msg = "directory value is not an object"
        raise TypeError(msg)
    return DirectoryEntry(sor=key, **raw)


def _decode_task(_key: str, value: bytes) -> TaskRecord:
    return TaskRecord.model_validate(codec.loads(value))


class DirectoryTable(Table[DirectoryEntry]):
    def __init__(self) -> None:
        super().__init__("directory", _decode_directory)


class TaskTable(Table[TaskRecord]):
    def __init__(self) -> None:
        super().__init__("tasks", _decode_task)

    def _accept(self, current: TaskRecord | None, new: TaskRecord) -> bool:
        # The router puts a task's new state here as soon as its batch commits;
        # the reader then replays older records of the same task. Never go back.
        return current is None or (new.version, new.updated_at) >= (current.version, current.updated_at)
