"""Ending claims in batches, for ``SqlStore``: a group commit and the one fenced UPDATE it sends.

Whatever outcomes (complete, retry, dead letter, expire, release) arrive while one batch is being written are written
together in the next, as one ``UPDATE ... FROM (VALUES ...)`` whose every row is fenced by its lease token.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import String, bindparam, column, text
from sqlalchemy.sql.selectable import TextualSelect

from ._tables import UtcDateTime
from .entries import AttemptRecord
from .errors import StoreUnavailableError

__all__ = ["PG_BATCH_FINISH", "Finish", "Finished", "GroupCommit", "batch_finish_statement", "pg_batch_finish_json"]


@dataclass(frozen=True, slots=True)
class Finish:
    """One fenced end of a claim: the entry's new status and what changes with it."""

    entry_id: str
    lease_token: str
    status: str
    completed_at: datetime | None = None
    result_payload: str | None = None
    due: datetime | None = None  #: new scheduled_for (retries); None keeps it
    retry_increment: int = 0
    error_message: str | None = None  #: None keeps the previous one
    attempt: AttemptRecord | None = None


class Finished(NamedTuple):
    status: str
    scheduled_for: datetime


#: Most requests one batch carries (10 parameters each keeps SQLite far below its parameter limit).
_MAX_FINISH_BATCH = 200


class GroupCommit:
    """Writes requests in batches: whatever arrives while one batch is being written goes into the next.

    Idle, a request is written at once (no added latency); under load, one transaction carries many.
    """

    def __init__(self, write: Callable[[list[Finish]], Awaitable[list[Finished | None]]]) -> None:
        self._write = write
        self._queue: list[tuple[Finish, asyncio.Future[Finished | None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, request: Finish) -> Finished | None:
        future: asyncio.Future[Finished | None] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        while self._queue:
            # At most one request per entry in a batch: results are matched to requests by entry id, and a stale
            # holder's request beside the current one must meet the current one's change, not share a statement.
            batch: list[tuple[Finish, asyncio.Future[Finished | None]]] = []
            later: list[tuple[Finish, asyncio.Future[Finished | None]]] = []
            in_batch: set[str] = set()
            for item in self._queue:
                if len(batch) < _MAX_FINISH_BATCH and item[0].entry_id not in in_batch:
                    in_batch.add(item[0].entry_id)
                    batch.append(item)
                else:
                    later.append(item)
            self._queue = later
            await self._write_batch(batch)

    async def _write_batch(self, batch: list[tuple[Finish, asyncio.Future[Finished | None]]]) -> None:
        try:
            results = await self._write([request for request, _ in batch])
        except StoreUnavailableError as exc:  # the database is away: every waiter retries on its own
            _fail_all(batch, exc)
            return
        except asyncio.CancelledError as exc:
            _fail_all(batch, exc)
            raise
        except Exception as exc:  # noqa: BLE001 - whatever it is, it is retried alone or handed to its waiter
            if len(batch) == 1:
                _fail_all(batch, exc)
                return
            # One bad request (text the driver cannot encode, say) must not sink the others written with it.
            for item in batch:
                await self._write_batch([item])
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)


def _fail_all(batch: list[tuple[Finish, asyncio.Future[Finished | None]]], exc: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)


#: Ends claimed entries from the rows of ``v``, each fenced by its lease token and PROCESSING status; shared by
#: both outcome statements below.
_FENCED_FINISH = """UPDATE scheduled_commands
SET status = v.status,
    completed_at = v.completed_at,
    started_at = CASE WHEN v.started_at IS NOT NULL THEN v.started_at
                      WHEN scheduled_commands.attempt_count = 0 THEN NULL
                      ELSE scheduled_commands.started_at END,
    result_payload = CASE WHEN v.status = 'COMPLETED' THEN v.result_payload ELSE scheduled_commands.result_payload END,
    scheduled_for = COALESCE(v.due, scheduled_commands.scheduled_for),
    retry_count = scheduled_commands.retry_count + v.retry_increment,
    attempt_count = scheduled_commands.attempt_count + v.attempt_increment,
    error_message = COALESCE(v.error_message, scheduled_commands.error_message),
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
FROM v
WHERE scheduled_commands.id = v.id AND scheduled_commands.lease_token = v.token
  AND scheduled_commands.status = 'PROCESSING'
RETURNING scheduled_commands.id, scheduled_commands.status, scheduled_commands.scheduled_for"""


@functools.lru_cache(maxsize=64)
def batch_finish_statement(count: int, *, postgresql: bool) -> TextualSelect:
    """``UPDATE ... FROM (VALUES ...)`` ending ``count`` claims at once, each fenced by its lease token."""
    if postgresql:
        row = (
            "(:id_{i}, :token_{i}, :status_{i}, CAST(:completed_at_{i} AS timestamptz), CAST(:result_{i} AS text), "
            "CAST(:due_{i} AS timestamptz), CAST(:retry_{i} AS integer), CAST(:attempt_{i} AS integer), "
            "CAST(:error_{i} AS text), CAST(:started_at_{i} AS timestamptz))"
        )
    else:
        row = (
            "(:id_{i}, :token_{i}, :status_{i}, :completed_at_{i}, :result_{i}, :due_{i}, :retry_{i}, "
            ":attempt_{i}, :error_{i}, :started_at_{i})"
        )
    values = ", ".join(row.format(i=i) for i in range(count))
    sql = f"""
WITH v(id, token, status, completed_at, result_payload, due, retry_increment, attempt_increment, error_message,
       started_at)
    AS (VALUES {values})
{_FENCED_FINISH}"""
    datetimes = [
        bindparam(f"{name}_{i}", type_=UtcDateTime)
        for i in range(count)
        for name in ("completed_at", "due", "started_at")
    ]
    return (
        text(sql)
        .bindparams(*datetimes)
        .columns(column("id", String), column("status", String), column("scheduled_for", UtcDateTime))
    )


#: PostgreSQL: ending a batch of claims as ONE statement, atomic by itself, so it runs in autocommit mode and costs one
#: round trip: the fenced UPDATE, the INSERT of the attempts of the rows it updated, the NOTIFY for rows that became
#: PENDING again, and ``synchronous_commit = off`` for its commit (an outcome lost in a server crash only runs the
#: command again, as a lost lease would). The batch is one JSON parameter: the statement's text never changes, so the
#: driver parses it once (a statement of thousands of placeholders costs milliseconds of CPU per execution).
PG_BATCH_FINISH = text(
    f"""
WITH v AS (
    SELECT * FROM json_to_recordset(CAST(:batch AS json)) AS r(
        id text, token text, status text, completed_at timestamptz, result_payload text, due timestamptz,
        retry_increment integer, attempt_increment integer, error_message text, started_at timestamptz,
        a_number integer, a_worker text, a_started timestamptz, a_finished timestamptz, a_outcome text, a_error text)
),
done AS (
{_FENCED_FINISH}),
attempts AS (
    INSERT INTO scheduled_command_attempts (entry_id, attempt, worker_id, started_at, finished_at, outcome, error)
    SELECT v.id, v.a_number, v.a_worker, v.a_started, v.a_finished, v.a_outcome, v.a_error
    FROM v JOIN done ON done.id = v.id
    WHERE v.a_number IS NOT NULL
)
SELECT done.id, done.status, done.scheduled_for
FROM done CROSS JOIN (
    SELECT set_config('synchronous_commit', 'off', true),
           (SELECT pg_notify(:channel, extract(epoch FROM min(pending.scheduled_for))::text)
            FROM done AS pending WHERE pending.status = 'PENDING' HAVING count(*) > 0)
) AS side
"""
).columns(column("id", String), column("status", String), column("scheduled_for", UtcDateTime))


def pg_batch_finish_json(requests: list[Finish]) -> str:
    """The ``batch`` parameter of ``PG_BATCH_FINISH``."""
    rows = []
    for r in requests:
        a = r.attempt
        rows.append(
            {
                "id": r.entry_id,
                "token": r.lease_token,
                "status": r.status,
                "completed_at": _iso(r.completed_at),
                "result_payload": r.result_payload,
                "due": _iso(r.due),
                "retry_increment": r.retry_increment,
                "attempt_increment": 1 if a is not None else 0,
                "error_message": r.error_message,
                "started_at": _iso(a.started_at) if a is not None else None,
                "a_number": a.attempt if a is not None else None,
                "a_worker": a.worker_id if a is not None else None,
                "a_started": _iso(a.started_at) if a is not None else None,
                "a_finished": _iso(a.finished_at) if a is not None else None,
                "a_outcome": a.outcome if a is not None else None,
                "a_error": a.error if a is not None else None,
            }
        )
    return json.dumps(rows)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value.isoformat()} cannot be stored; use UTC-aware datetimes")
    return value.isoformat()
