"""The clinic directory on Kafka: CSV in, a compacted topic keyed by SOR, a dict out."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

from pydantic import ValidationError

from contracts import ConfigError, ParseError, Topics, codec
from contracts.directory import DirectoryEntry
from contracts.tenants import Tenants
from prik.kafka import kafka_errors, make_producer
from prik.logs import get_logger
from prik.settings import KafkaSettings
from producers.reading import read_records

__all__ = [
    "DirectoryError",
    "delete_directory_entries",
    "load_directory",
    "parse_directory_csv",
    "read_directory",
]

_COLUMNS = ("sor", "lps", "name", "ydernummer")
_REQUIRED = 2
_MAX_LISTED = 20
_log = get_logger(__name__)


class DirectoryError(ConfigError):
    """A directory CSV with faults; `problems` has one "line N: ..." text per fault."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        shown = "; ".join(self.problems[:_MAX_LISTED])
        more = len(self.problems) - _MAX_LISTED
        tail = f"; and {more} more" if more > 0 else ""
        super().__init__(f"directory CSV has {len(self.problems)} bad row(s), nothing loaded: {shown}{tail}")


def _field_errors(exc: ValidationError) -> str:
    # Field names and rule texts only: a CPR pasted into the wrong column must not be echoed.
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    return ", ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)


def _check_header(header: list[str]) -> str | None:
    names = [h.strip().lower() for h in header]
    if names[:_REQUIRED] != ["sor", "lps"] or names != list(_COLUMNS[: len(names)]):
        # Not echoed: a file without its header row starts with data.
        return "line 1: the header row must be sor,lps[,name,ydernummer] (is it missing?)"
    return None


def parse_directory_csv(text: str, tenants: Tenants | None = None) -> list[DirectoryEntry]:
    """Parse a directory CSV: a header row `sor,lps[,name,ydernummer]`, then one clinic per row.

    All-or-nothing: every bad row (bad SOR, unknown LPS when `tenants` is given,
    a SOR listed twice, wrong column count) is reported with its line number in
    one `DirectoryError`, and then no entry is returned at all.
    """
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if header is None:
        raise DirectoryError(
            ["line 1: the file is empty; the header row sor,lps[,name,ydernummer] is missing"]
        )
    problem = _check_header(header)
    if problem is not None:
        raise DirectoryError([problem])
    width = len(header)
    lps_ids = set(tenants.lps_ids) if tenants is not None else None
    problems: list[str] = []
    entries: list[DirectoryEntry] = []
    first_line: dict[str, int] = {}
    for row in rows:
        line = rows.line_num
        if not any(cell.strip() for cell in row):
            continue
        if not _REQUIRED <= len(row) <= width:
            problems.append(f"line {line}: expected {width} columns, found {len(row)}")
            continue
        cells = [cell.strip() or None for cell in row]
        try:
            entry = DirectoryEntry.model_validate(dict(zip(_COLUMNS, cells, strict=False)))
        except ValidationError as exc:
            problems.append(f"line {line}: {_field_errors(exc)}")
            continue
        if lps_ids is not None and entry.lps not in lps_ids:
            known = tenants is not None and tenants.get(entry.lps) is not None
            why = "is not an lps tenant" if known else "is not in the tenants file"
            problems.append(f"line {line}: lps {entry.lps} {why}")
            continue
        if entry.sor in first_line:
            problems.append(f"line {line}: SOR {entry.sor} is already listed on line {first_line[entry.sor]}")
            continue
        first_line[entry.sor] = line
        entries.append(entry)
    if problems:
        raise DirectoryError(problems)
    return entries


async def _produce(kafka: KafkaSettings, topic: str, records: Iterable[tuple[bytes, bytes | None]]) -> int:
    producer = make_producer(kafka, client_id="prik-directory")
    with kafka_errors(f"connecting to Kafka at {kafka.bootstrap}"):
        await producer.start()
    try:
        with kafka_errors(f"writing {topic}"):
            futures = [await producer.send(topic, value, key=key) for key, value in records]
            for future in futures:
                await future
    finally:
        await producer.stop()
    return len(futures)


async def load_directory(kafka: KafkaSettings, topics: Topics, entries: Iterable[DirectoryEntry]) -> int:
    """Write `entries` to the compacted directory topic (key SOR); returns how many were written.

    Loading the same file again is harmless: compaction keeps the latest value per SOR.
    """
    return await _produce(
        kafka, topics.directory, ((e.sor.encode(), codec.dumps(e.value())) for e in entries)
    )


async def delete_directory_entries(kafka: KafkaSettings, topics: Topics, sors: Iterable[str]) -> int:
    """Write tombstones: the clinics with these SOR codes leave the directory."""
    return await _produce(kafka, topics.directory, ((sor.encode(), None) for sor in sors))


def _entry(sor: str, value: bytes) -> DirectoryEntry | None:
    try:
        fields = codec.loads(value)
        return DirectoryEntry.model_validate({**fields, "sor": sor}) if isinstance(fields, dict) else None
    except (ParseError, ValidationError):
        return None


async def read_directory(kafka: KafkaSettings, topics: Topics) -> dict[str, DirectoryEntry]:
    """The directory as it stands now: every SOR's latest entry, tombstoned ones removed.

    A record that is not a valid entry is skipped with a warning, not fatal: one
    operator mistake must not take every clinic's routing down.
    """
    directory: dict[str, DirectoryEntry] = {}
    async for record in read_records(kafka, topics.directory):
        if record.key is None:
            continue
        sor = record.key.decode("utf-8", errors="replace")
        if record.value is None:
            directory.pop(sor, None)
            continue
        entry = _entry(sor, record.value)
        if entry is not None:
            directory[sor] = entry
        else:
            _log.warning(
                "skipping an invalid directory record", partition=record.partition, offset=record.offset
            )
    return directory
