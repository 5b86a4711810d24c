"""New entries written on PostgreSQL: the columns a new entry sets, its row, and the statements that insert rows
(``COPY`` and ``INSERT ... unnest`` for ``schedule_many()`` and a caller's session; the producers' one-statement
INSERT and NOTIFY for ``schedule()``), so that a column added here flows through every path."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text

from stores.entries import ScheduledCommandEntry, ScheduledCommandStatus

from ._pg_finish import iso

__all__ = ["BULK_COLUMNS"]

#: The columns a new entry sets (the others start NULL), with their PostgreSQL types, for the bulk insert.
BULK_COLUMNS = (
    ("id", "text"),
    ("command_type", "text"),
    ("payload", "text"),
    ("status", "text"),
    ("priority", "integer"),
    ("scheduled_for", "timestamptz"),
    ("created_at", "timestamptz"),
    ("expires_at", "timestamptz"),
    ("retry_count", "integer"),
    ("attempt_count", "integer"),
    ("max_retries", "integer"),
    ("correlation_id", "text"),
    ("metadata_json", "text"),
    ("idempotency_key", "text"),
    ("timeout_seconds", "double precision"),
    ("recurring_name", "text"),
    ("occurrence_at", "timestamptz"),
    ("occurrence_generation", "integer"),
    ("trace_context", "text"),
    ("queue", "text"),
    ("lock", "text"),
)
#: Scheduling many on PostgreSQL: one ``COPY`` of the rows (psycopg's COPY writer, in C, is about twice as fast as
#: binding arrays). An id already stored fails the COPY, and the transaction, like it fails an INSERT.
_BULK_COPY = f"COPY scheduled_commands ({', '.join(name for name, _ in BULK_COLUMNS)}) FROM STDIN"
#: COPY costs a round trip more than one statement: used from this many rows.
_COPY_FROM = 20
#: The same as one INSERT ... SELECT FROM unnest(arrays): for fewer rows, and for a caller's session on a driver
#: other than psycopg 3.
_BULK_INSERT = text(
    f"INSERT INTO scheduled_commands ({', '.join(name for name, _ in BULK_COLUMNS)}) "
    f"SELECT * FROM unnest({', '.join(f'CAST(:{name} AS {kind}[])' for name, kind in BULK_COLUMNS)})"
)

#: ``schedule()`` outside a caller's session (``_producers.py``): the rows (one JSON parameter, the columns of
#: ``BULK_COLUMNS``), inserted, and the wake-up NOTIFY, in ONE statement: one round trip, one transaction (a
#: data-modifying WITH runs whether or not the query reads it). psycopg placeholders: it is sent through the driver.
_INSERT_AND_NOTIFY = (
    f"WITH inserted AS (INSERT INTO scheduled_commands ({', '.join(name for name, _ in BULK_COLUMNS)}) "
    f"SELECT {', '.join(name for name, _ in BULK_COLUMNS)} FROM json_to_recordset(%s::json) "
    f"AS r({', '.join(f'{name} {kind}' for name, kind in BULK_COLUMNS)})) "
    "SELECT pg_notify(%s, %s)"
)
#: The same for one entry: one value per column (dumping 18 one-element arrays costs more than the round trip saves).
_INSERT_ONE_AND_NOTIFY = (
    f"WITH inserted AS (INSERT INTO scheduled_commands ({', '.join(name for name, _ in BULK_COLUMNS)}) "
    f"VALUES ({', '.join(f'%s::{kind}' for _, kind in BULK_COLUMNS)})) "
    "SELECT pg_notify(%s, %s)"
)


def _columns(rows: list[tuple[Any, ...]]) -> dict[str, list[Any]]:
    return {name: [row[i] for row in rows] for i, (name, _) in enumerate(BULK_COLUMNS)}


_NAMES = tuple(name for name, _ in BULK_COLUMNS)


def _insert_parameters(entries: Sequence[ScheduledCommandEntry]) -> list[Any]:
    """The column parameters of ``_INSERT_ONE_AND_NOTIFY`` (one entry: its values in the order of ``BULK_COLUMNS``)
    or of ``_INSERT_AND_NOTIFY`` (several: their rows as one JSON parameter, which ``json.dumps`` writes in C where
    psycopg's text-array dumper costs about 100 µs of Python per row). A row leaves out its NULL columns, which
    ``json_to_recordset`` reads as NULL: most of a new entry's columns, and 40 % of the JSON to send and parse."""
    if len(entries) == 1:
        return list(_copy_row(entries[0]))
    rows = []
    for entry in entries:
        row = {name: value for name, value in zip(_NAMES, _copy_row(entry), strict=True) if value is not None}
        # The timestamps as ISO text; a new entry's due time is most often its creation time, written once.
        due = row["scheduled_for"] = iso(entry.scheduled_for)
        row["created_at"] = due if entry.created_at is entry.scheduled_for else iso(entry.created_at)
        for name in _OPTIONAL_TIMES:
            if name in row:
                row[name] = iso(row[name])
        rows.append(row)
    return [json.dumps(rows)]


#: The timestamp columns of ``BULK_COLUMNS`` besides ``scheduled_for`` and ``created_at`` (never NULL): NULL in
#: most new entries, so left out of their JSON rows.
_OPTIONAL_TIMES = tuple(
    name for name, kind in BULK_COLUMNS if kind == "timestamptz" and name not in ("scheduled_for", "created_at")
)


def _copy_row(entry: ScheduledCommandEntry) -> tuple[Any, ...]:
    """A new entry's values in the order of ``BULK_COLUMNS``."""
    return (
        entry.id,
        entry.command_type,
        entry.payload,
        ScheduledCommandStatus.PENDING.value,
        entry.priority,
        entry.scheduled_for,
        entry.created_at,
        entry.expires_at,
        entry.retry_count,
        entry.attempt_count,
        entry.max_retries,
        entry.correlation_id,
        json.dumps(entry.metadata) if entry.metadata is not None else None,
        entry.idempotency_key,
        entry.timeout_seconds,
        entry.recurring_name,
        entry.occurrence_at,
        entry.occurrence_generation,
        entry.trace_context,
        entry.queue,
        entry.lock,
    )
