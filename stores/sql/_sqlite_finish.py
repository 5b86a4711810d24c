"""Ending claims on SQLite: the statement that ends a batch of claims, each fenced by its lease token, and the
attempts of those it ended.

It runs inside a write transaction, which then resolves the dependants of the entries it ended (SQLite's one writer
makes that safe without the version checks PostgreSQL needs, see ``_pg_finish.py``): the store's, or, for a batch
whose entries have no dependants, one of the backend's own thread (``_sqlite_direct.py``). The statement
depends only on the batch's size: each size's is built once and kept.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy.engine import Connection

from ._backend import CHANGED_COLUMNS
from ._group_commit import FENCED_FINISH, Finish
from ._pg_worker import Record
from ._rows import attempt_to_row
from ._sqlite_driver import Binder, DriverCalls, RowReader
from ._tables import ATTEMPTS, UtcDateTime

__all__ = ["finish_batch"]


@functools.lru_cache(maxsize=64)
def _batch_finish_statement(count: int) -> str:
    """``UPDATE ... FROM (VALUES ...)`` ending ``count`` claims at once, each fenced by its lease token."""
    row = (
        "(:id_{i}, :token_{i}, :status_{i}, :completed_at_{i}, :result_{i}, :due_{i}, :retry_{i}, "
        ":attempt_{i}, :error_{i}, :started_at_{i})"
    )
    values = ", ".join(row.format(i=i) for i in range(count))
    return f"""
WITH v(id, token, status, completed_at, result_payload, due, retry_increment, attempt_increment, error_message,
       started_at)
    AS (VALUES {values})
{FENCED_FINISH}"""


_INSERT_ATTEMPT = (
    f"INSERT INTO {ATTEMPTS.name} (entry_id, attempt, worker_id, started_at, finished_at, outcome, error)"
    " VALUES (:entry_id, :attempt, :worker_id, :started_at, :finished_at, :outcome, :error)"
)
_READ_CHANGED = RowReader(CHANGED_COLUMNS)
_DATETIME = Binder(UtcDateTime())


def finish_batch(conn: Connection, requests: list[Finish]) -> list[Record]:
    """End ``requests`` (each only if its lease token still holds) and record their attempts;
    ``(id, status, scheduled_for, completed_at, has_dependants)`` of the rows it changed. Synchronous, as the claim
    (``_sqlite_claim.py`` says why); its statements go at the driver level (``_sqlite_driver.py`` says why)."""
    calls = DriverCalls(conn)
    dialect = calls.dialect
    parameters: dict[str, Any] = {}
    for i, r in enumerate(requests):
        parameters.update(
            {
                f"id_{i}": r.entry_id,
                f"token_{i}": r.lease_token,
                f"status_{i}": r.status,
                f"completed_at_{i}": _DATETIME(dialect, r.completed_at),
                f"result_{i}": r.result_payload,
                f"due_{i}": _DATETIME(dialect, r.due),
                f"retry_{i}": r.retry_increment,
                f"attempt_{i}": 1 if r.attempt is not None else 0,
                f"error_{i}": r.error_message,
                f"started_at_{i}": _DATETIME(dialect, r.attempt.started_at) if r.attempt is not None else None,
            }
        )
    rows = _READ_CHANGED(dialect, calls.fetch(_batch_finish_statement(len(requests)), parameters))
    done = {row.id for row in rows}
    attempts = [attempt_to_row(r.entry_id, r.attempt) for r in requests if r.attempt is not None and r.entry_id in done]
    for attempt in attempts:
        attempt["started_at"] = _DATETIME(dialect, attempt["started_at"])
        attempt["finished_at"] = _DATETIME(dialect, attempt["finished_at"])
    if attempts:
        calls.execute_many(_INSERT_ATTEMPT, attempts)
    return rows
