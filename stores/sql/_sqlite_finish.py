"""Ending claims on SQLite: the statement that ends a batch of claims, each fenced by its lease token, and the
attempts of those it ended.

It runs inside the store's write transaction, which then resolves the dependants of the entries it ended (SQLite's
one writer makes that safe without the version checks PostgreSQL needs, see ``_pg_finish.py``). The statement
depends only on the batch's size: each size's is built once and kept.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, insert, text
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.selectable import TextualSelect

from ._backend import CHANGED_COLUMNS
from ._group_commit import FENCED_FINISH, Finish
from ._rows import attempt_to_row
from ._tables import ATTEMPTS, UtcDateTime

__all__ = ["finish_batch"]


@functools.lru_cache(maxsize=64)
def _batch_finish_statement(count: int) -> TextualSelect:
    """``UPDATE ... FROM (VALUES ...)`` ending ``count`` claims at once, each fenced by its lease token."""
    row = (
        "(:id_{i}, :token_{i}, :status_{i}, :completed_at_{i}, :result_{i}, :due_{i}, :retry_{i}, "
        ":attempt_{i}, :error_{i}, :started_at_{i})"
    )
    values = ", ".join(row.format(i=i) for i in range(count))
    sql = f"""
WITH v(id, token, status, completed_at, result_payload, due, retry_increment, attempt_increment, error_message,
       started_at)
    AS (VALUES {values})
{FENCED_FINISH}"""
    datetimes = [
        bindparam(f"{name}_{i}", type_=UtcDateTime)
        for i in range(count)
        for name in ("completed_at", "due", "started_at")
    ]
    return text(sql).bindparams(*datetimes).columns(*CHANGED_COLUMNS)


async def finish_batch(conn: AsyncConnection, requests: list[Finish]) -> Sequence[Row[Any]]:
    """End ``requests`` (each only if its lease token still holds) and record their attempts;
    ``(id, status, scheduled_for, completed_at, has_dependants)`` of the rows it changed."""
    statement = _batch_finish_statement(len(requests))
    parameters: dict[str, Any] = {}
    for i, r in enumerate(requests):
        parameters.update(
            {
                f"id_{i}": r.entry_id,
                f"token_{i}": r.lease_token,
                f"status_{i}": r.status,
                f"completed_at_{i}": r.completed_at,
                f"result_{i}": r.result_payload,
                f"due_{i}": r.due,
                f"retry_{i}": r.retry_increment,
                f"attempt_{i}": 1 if r.attempt is not None else 0,
                f"error_{i}": r.error_message,
                f"started_at_{i}": r.attempt.started_at if r.attempt is not None else None,
            }
        )
    rows = (await conn.execute(statement, parameters)).all()
    done = {row.id for row in rows}
    attempts = [attempt_to_row(r.entry_id, r.attempt) for r in requests if r.attempt is not None and r.entry_id in done]
    if attempts:
        await conn.execute(insert(ATTEMPTS), attempts)
    return rows
