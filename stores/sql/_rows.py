"""Rows to entries and back. Stored rows are read one at a time: a value the database holds but Python cannot
represent never fails a whole query, and a row that does not convert to an entry is described (which column, what
value), never fatal.

Rows can be written behind the library's back (a migration script, a manual ``UPDATE``, another version): the
database's own types are wider than the entry's (PostgreSQL's ``timestamptz`` holds ``'-infinity'`` and the year
20000; SQLite holds any value in any column). Such a value is read as an ``UnreadableValue`` instead of raising
in the driver, so the other rows of the same result are still read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import Row

from stores.entries import AttemptRecord, ScheduledCommandEntry, ScheduledCommandStatus
from stores.errors import UnreadableEntryError

__all__ = [
    "UnreadableValue",
    "as_datetime",
    "attempt_from_row",
    "attempt_to_row",
    "convert_each",
    "decode_metadata",
    "entry_to_row",
    "install_psycopg_loaders",
    "log_unreadable",
    "read_entry",
    "readable",
    "row_to_entry",
]

logger = logging.getLogger("stores.sql")

#: Where an entry field is stored under another column name.
_COLUMN_OF_FIELD = {"metadata": "metadata_json"}


class UnreadableValue:
    """A stored value its column's Python type cannot hold; ``raw`` is what the database returned."""

    __slots__ = ("raw",)

    raw: object

    def __init__(self, raw: object) -> None:
        self.raw = raw.raw if isinstance(raw, UnreadableValue) else raw

    def __repr__(self) -> str:
        return repr(self.raw)


def read_entry(values: Mapping[str, Any], metadata: dict[str, str] | None) -> ScheduledCommandEntry:
    """Convert one row's column values (``seq`` and ``metadata_json`` removed by the caller) to an entry.

    Raises:
        UnreadableEntryError: naming the first column whose value does not fit, and that value.
    """
    fields = dict(values)
    seq = fields.pop("seq", None)
    fields.pop("metadata_json", None)
    fields["metadata"] = metadata
    entry_id = fields.get("id")
    if isinstance(entry_id, str) and not entry_id.isascii():
        try:  # SQLite hands back bytes that are not UTF-8 as surrogate escapes: no write could name this id
            entry_id.encode()
        except UnicodeEncodeError:
            raise UnreadableEntryError(seq, None, "id", entry_id, "not valid UTF-8") from None
    try:
        return ScheduledCommandEntry.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "?"
        column = _COLUMN_OF_FIELD.get(field, field)
        value = values.get(column, error.get("input"))
        raise UnreadableEntryError(seq, values.get("id"), column, value, error["msg"]) from None


def install_psycopg_loaders(driver_connection: Any) -> None:
    """Make a psycopg connection read timestamps Python cannot hold (``infinity``, ``-infinity``, years past 9999
    or before 1) as ``UnreadableValue`` instead of failing the whole result."""
    import psycopg
    from psycopg.adapt import Loader
    from psycopg.pq import Format

    adapters = driver_connection.adapters
    for type_name in ("timestamptz", "timestamp"):
        info = adapters.types.get(type_name)
        if info is None:  # pragma: no cover - built into every PostgreSQL
            continue
        inner_class = adapters.get_loader(info.oid, Format.TEXT)
        if inner_class is None or getattr(inner_class, "_tolerant", False):
            continue

        class TolerantLoader(Loader):
            _tolerant = True
            format = Format.TEXT
            _inner_class = inner_class

            def __init__(self, oid: int, context: Any = None) -> None:
                super().__init__(oid, context)
                self._inner = self._inner_class(oid, context)

            def load(self, data: Any) -> Any:
                try:
                    return self._inner.load(data)
                except (psycopg.DataError, ValueError, OverflowError):
                    return UnreadableValue(bytes(data).decode("utf-8", "replace"))

        adapters.register_loader(info.oid, TolerantLoader)


def as_datetime(value: object) -> datetime | None:
    """A stored timestamp, or None if it is NULL or unreadable."""
    return value if isinstance(value, datetime) else None


def entry_to_row(entry: ScheduledCommandEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "command_type": entry.command_type,
        "payload": entry.payload,
        "status": ScheduledCommandStatus.PENDING.value,
        "priority": entry.priority,
        "scheduled_for": entry.scheduled_for,
        "created_at": entry.created_at,
        "started_at": entry.started_at,
        "completed_at": entry.completed_at,
        "expires_at": entry.expires_at,
        "retry_count": entry.retry_count,
        "attempt_count": entry.attempt_count,
        "max_retries": entry.max_retries,
        "correlation_id": entry.correlation_id,
        "metadata_json": json.dumps(entry.metadata) if entry.metadata is not None else None,
        "idempotency_key": entry.idempotency_key,
        "error_message": entry.error_message,
        "result_payload": entry.result_payload,
        "timeout_seconds": entry.timeout_seconds,
        "lease_owner": None,
        "lease_token": None,
        "lease_expires_at": None,
        "recurring_name": entry.recurring_name,
        "occurrence_at": entry.occurrence_at,
        "occurrence_generation": entry.occurrence_generation,
        "trace_context": entry.trace_context,
        "queue": entry.queue,
        "lock": entry.lock,
    }


def row_to_entry(row: Row[Any]) -> ScheduledCommandEntry:
    """Raises ``UnreadableEntryError`` naming the column and value of a row written behind the library's back."""
    values = row._asdict()
    return read_entry(values, decode_metadata(values.get("metadata_json"), values.get("id")))


def convert_each(
    rows: Sequence[Row[Any]],
) -> tuple[list[tuple[int, ScheduledCommandEntry]], list[UnreadableEntryError]]:
    """Each row on its own: the ``(seq, entry)`` of those that convert, and what is wrong with the others."""
    converted: list[tuple[int, ScheduledCommandEntry]] = []
    unreadable: list[UnreadableEntryError] = []
    for row in rows:
        try:
            converted.append((row.seq, row_to_entry(row)))
        except UnreadableEntryError as exc:
            unreadable.append(exc)
    return converted, unreadable


def readable(rows: Sequence[Row[Any]], action: str) -> list[ScheduledCommandEntry]:
    """The entries of the rows that convert; the others are logged (the change was made to them all)."""
    converted, unreadable = convert_each(rows)
    for exc in unreadable:
        log_unreadable(exc, action)
    return [entry for _, entry in converted]


def log_unreadable(exc: UnreadableEntryError, action: str) -> None:
    logger.error("%s; %s", exc, action, extra={"action": "unreadable_row", "command_id": exc.entry_id})


def decode_metadata(text: str | None, entry_id: object) -> dict[str, str] | None:
    """Metadata as stored; a row whose metadata was damaged outside the library keeps running without it."""
    if text is None:
        return None
    try:
        value = json.loads(text)
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
    except ValueError:
        pass
    logger.warning(
        "entry %s has metadata that is not a JSON object; it is ignored: %.200r",
        entry_id,
        text,
        extra={"action": "bad_metadata", "command_id": entry_id},
    )
    return None


def attempt_to_row(entry_id: str, attempt: AttemptRecord) -> dict[str, Any]:
    return {
        "entry_id": entry_id,
        "attempt": attempt.attempt,
        "worker_id": attempt.worker_id,
        "started_at": attempt.started_at,
        "finished_at": attempt.finished_at,
        "outcome": attempt.outcome,
        "error": attempt.error,
    }


def attempt_from_row(row: Row[Any]) -> AttemptRecord:
    """Raises ``UnreadableEntryError`` naming the attempts column and value of a row written behind our back, so an
    entry's page says in one line what is wrong instead of failing with a validation error."""
    values = row._asdict()
    try:
        return AttemptRecord(
            attempt=values["attempt"],
            worker_id=values["worker_id"],
            started_at=values["started_at"],
            finished_at=values["finished_at"],
            outcome=values["outcome"],
            error=values["error"],
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        column = str(error["loc"][0]) if error["loc"] else "?"
        value = values.get(column, error.get("input"))
        raise UnreadableEntryError(
            values.get("seq"), values.get("entry_id"), f"scheduled_command_attempts.{column}", value, error["msg"]
        ) from None
