"""Ending claims on PostgreSQL: the statements that end a batch of claims, each ONE statement in autocommit mode (one
round trip), and the NOTIFY channels they and every other statement that finishes or releases entries speak on.

- ``_BATCH_FINISH_FAST``: the group commit's batch, leaving out entries that have dependants (checked on the locked
  row's newest version), so an entry without dependants never pays for them.
- ``_FINISH_RELEASING``: the batch of entries that have dependants and end COMPLETED (or PENDING again): the outcome,
  the pairs marked resolved and the dependants released, in the same one statement; a chain step costs its parent's
  outcome no round trip more.
- ``_BATCH_FINISH``: the batch of every entry, for a transaction that resolves their dependants in statements of its
  own (failures, which may cancel dependants in a cascade of rounds; and the rare race below).

Race-freedom of ``_FINISH_RELEASING`` (READ COMMITTED). Adding a dependant updates its parents' rows first (setting
``has_dependants``), then inserts the dependant and its pairs, in one transaction. One statement reads every table
from the snapshot taken when it started, while its UPDATE locks the newest version of a row (waiting for the
transaction holding it): a dependant whose transaction committed between the snapshot and the lock would be missed
by the statement's read of the pairs, and left WAITING for ever. So the statement ends only rows whose version
(``xmin``) is still the one its snapshot saw: a parent updated after the snapshot (by a dependant being added, or a
lease renewal) is left unchanged and reported ``raced``, and the store ends it in a transaction whose later
statements see every committed pair. A dependant added after the statement locked the parent waits for its commit,
and reads the parent's outcome (see ``_dependencies.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import String, column, text
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from stores.entries import TERMINAL_STATUSES, ScheduledCommandStatus

from ._backend import CHANGED_COLUMNS
from ._group_commit import PG_FENCED_FINISH, PG_FENCED_FINISH_UNCHANGED, PG_FENCED_FINISH_WITHOUT_DEPENDANTS, Finish
from ._pg_worker import NativeStatement, PgWorker, Record

__all__ = [
    "FINISHED_CHANNEL",
    "FINISHED_PER_NOTIFY",
    "NOTIFY_CHANNEL",
    "RELEASING_STATUSES",
    "Released",
    "finish_batch",
    "finish_batch_direct",
    "finish_releasing",
    "iso",
]

#: The NOTIFY channel that wakes workers; the payload is the earliest due time as a POSIX timestamp.
NOTIFY_CHANNEL = "cqrs_scheduling_due"
#: The NOTIFY channel that wakes ``wait()``: the payload is a JSON array of ids of entries that reached a terminal
#: status (COMPLETED, FAILED, EXPIRED, CANCELLED), at most ``FINISHED_PER_NOTIFY`` of them.
FINISHED_CHANNEL = "cqrs_scheduling_finished"
#: Ids per finish NOTIFY: a payload must stay under PostgreSQL's 8000 bytes, and an id (64 characters at most) takes
#: at most 6 bytes a character in JSON.
FINISHED_PER_NOTIFY = 16

#: The outcomes ``finish_releasing`` takes: COMPLETED meets every dependant's condition (it never cancels one, so
#: never starts a cascade), and PENDING again (a retry, a release) resolves nothing.
RELEASING_STATUSES = frozenset({ScheduledCommandStatus.COMPLETED.value, ScheduledCommandStatus.PENDING.value})

_TERMINAL = ", ".join(f"'{status.value}'" for status in sorted(TERMINAL_STATUSES))

#: The rows of the batch, from its one JSON parameter: the statement's text never changes, so the driver parses it
#: once (a statement of thousands of placeholders costs milliseconds of CPU per execution).
_ROWS = """v AS (
    SELECT * FROM json_to_recordset(CAST(:batch AS json)) AS r(
        id text, token text, status text, completed_at timestamptz, result_payload text, due timestamptz,
        retry_increment integer, attempt_increment integer, error_message text, started_at timestamptz,
        a_number integer, a_worker text, a_started timestamptz, a_finished timestamptz, a_outcome text, a_error text)
)"""

_ATTEMPTS = """attempts AS (
    INSERT INTO scheduled_command_attempts (entry_id, attempt, worker_id, started_at, finished_at, outcome, error)
    SELECT v.id, v.a_number, v.a_worker, v.a_started, v.a_finished, v.a_outcome, v.a_error
    FROM v JOIN done ON done.id = v.id
    WHERE v.a_number IS NOT NULL
)"""

#: The NOTIFYs of the rows of ``rows`` (a CTE of id, status, scheduled_for): the earliest due time of those PENDING,
#: and the ids of those finished, for ``wait()``; and ``synchronous_commit = off`` for the statement's commit (an
#: outcome lost in a server crash only runs the command again, as a lost lease would).
_SIDE = f"""(
    SELECT set_config('synchronous_commit', 'off', true),
           (SELECT pg_notify(:channel, extract(epoch FROM min(pending.scheduled_for))::text)
            FROM {{rows}} AS pending WHERE pending.status = 'PENDING' HAVING count(*) > 0),
           (SELECT count(pg_notify(:finished_channel, chunk.ids)) FROM (
                SELECT CAST(json_agg(fin.id) AS text) AS ids
                FROM (SELECT id, row_number() OVER () - 1 AS n FROM done WHERE status IN ({_TERMINAL})) AS fin
                GROUP BY fin.n / {FINISHED_PER_NOTIFY}) AS chunk)
) AS side"""


def _batch_finish(fenced: str) -> str:
    """Ending a batch of claims as ONE statement: the fenced UPDATE, the INSERT of the attempts of the rows it
    updated, and the NOTIFYs."""
    return f"""
WITH {_ROWS},
done AS (
{fenced}),
{_ATTEMPTS}
SELECT done.id, done.status, done.scheduled_for, done.completed_at, done.has_dependants
FROM done CROSS JOIN {_SIDE.format(rows="done")}
"""


#: The batch, entries with dependants left out (as psycopg sends it on the worker's connections, ``_pg_worker.py``).
_BATCH_FINISH_FAST_SQL = _batch_finish(PG_FENCED_FINISH_WITHOUT_DEPENDANTS)
_BATCH_FINISH_FAST = text(_BATCH_FINISH_FAST_SQL).columns(*CHANGED_COLUMNS)
_BATCH_FINISH_FAST_DIRECT = NativeStatement.of(_BATCH_FINISH_FAST_SQL)
#: The batch of every entry: in the transaction that also resolves the dependants.
_BATCH_FINISH = text(_batch_finish(PG_FENCED_FINISH)).columns(*CHANGED_COLUMNS)

#: The batch of entries with dependants that end COMPLETED (or PENDING again), and their dependants, in ONE
#: statement (see the module docstring): ``seen`` is the snapshot's version of each row, materialized so that no
#: re-check of a locked row reads it again; ``done`` ends the rows still at that version; ``pairs`` marks the pairs
#: of the parents that completed resolved; ``released`` counts them off their WAITING dependants (PENDING at zero;
#: every SET expression reads the row before the update, the newest version when another parent's outcome changed
#: it meanwhile). Rows: ``kind`` 'finished' (the rows ended), 'released' (dependants made PENDING), 'raced' (rows
#: the snapshot saw held under their token that were changed after it: not ended, to be ended again apart). Rows are
#: found by id, their status written so that no partial or status index matches it (see ``PG_FENCED_FINISH``): a
#: generic plan walked every PROCESSING entry for ``seen`` and every WAITING one for ``released``.
_FINISH_RELEASING_SQL = f"""
WITH {_ROWS},
seen AS MATERIALIZED (
    SELECT c.id, c.xmin AS version, c.lease_token FROM scheduled_commands AS c
    WHERE c.id = ANY(ARRAY(SELECT id FROM v)) AND (c.status || '') = 'PROCESSING'
),
done AS (
{PG_FENCED_FINISH_UNCHANGED}),
{_ATTEMPTS},
pairs AS (
    UPDATE scheduled_command_dependencies AS d SET resolved = true
    FROM done
    WHERE d.parent_id = done.id AND done.status = 'COMPLETED' AND done.has_dependants AND NOT d.resolved
    RETURNING d.child_id
),
met AS (SELECT child_id, count(*) AS n FROM pairs GROUP BY child_id),
released AS (
    UPDATE scheduled_commands AS c
    SET status = CASE WHEN c.pending_parents - met.n <= 0 THEN 'PENDING' ELSE 'WAITING' END,
        pending_parents = greatest(c.pending_parents - met.n, 0)
    FROM met
    WHERE c.id = ANY(ARRAY(SELECT child_id FROM met)) AND c.id = met.child_id AND (c.status || '') = 'WAITING'
    RETURNING c.id, c.status, c.scheduled_for, c.completed_at, c.has_dependants
),
changed AS (
    SELECT 'finished' AS kind, id, status, scheduled_for, completed_at, has_dependants FROM done
    UNION ALL
    SELECT 'released', id, status, scheduled_for, completed_at, has_dependants FROM released
    WHERE status = 'PENDING'
)
SELECT changed.* FROM changed CROSS JOIN {_SIDE.format(rows="changed")}
UNION ALL
SELECT 'raced', v.id, NULL, NULL, NULL, NULL
FROM v JOIN seen ON seen.id = v.id AND seen.lease_token = v.token
WHERE NOT EXISTS (SELECT FROM done WHERE done.id = v.id)
"""
_FINISH_RELEASING = text(_FINISH_RELEASING_SQL).columns(column("kind", String), *CHANGED_COLUMNS)
_FINISH_RELEASING_DIRECT = NativeStatement.of(_FINISH_RELEASING_SQL)


@dataclass
class Released:
    """What ``finish_releasing`` did: the rows it ended, the dependants it released (id, due time), and the
    requests it left alone because their rows changed after its snapshot (to be ended again apart)."""

    finished: list[Any] = field(default_factory=list)  #: Row, or Record from the worker's connections
    released: list[tuple[str, datetime]] = field(default_factory=list)
    raced: set[str] = field(default_factory=set)


def _parameters(requests: list[Finish]) -> dict[str, Any]:
    return {"batch": _batch_json(requests), "channel": NOTIFY_CHANNEL, "finished_channel": FINISHED_CHANNEL}


async def finish_batch(
    conn: AsyncConnection, requests: list[Finish], *, skip_dependants: bool = False
) -> Sequence[Row[Any]]:
    """``Backend.finish_batch`` on PostgreSQL."""
    statement = _BATCH_FINISH_FAST if skip_dependants else _BATCH_FINISH
    return (await conn.execute(statement, _parameters(requests))).all()


async def finish_batch_direct(worker: PgWorker, requests: list[Finish]) -> list[Record]:
    """``finish_batch(skip_dependants=True)`` as one prepared statement on the worker's connections."""
    return await worker.fetch(_BATCH_FINISH_FAST_DIRECT, _parameters(requests))


async def finish_releasing(conn: AsyncConnection | PgWorker, requests: list[Finish]) -> Released:
    """End ``requests`` (each to a status of ``RELEASING_STATUSES``) and release their dependants, in one statement
    on ``conn`` (autocommit), or as a prepared statement on the worker's connections."""
    wrong = sorted({r.status for r in requests} - RELEASING_STATUSES)
    if wrong:
        raise ValueError(f"finish_releasing ends entries COMPLETED or PENDING, not {', '.join(wrong)}")
    result = Released()
    if isinstance(conn, PgWorker):
        rows: Sequence[Any] = await conn.fetch(_FINISH_RELEASING_DIRECT, _parameters(requests))
    else:
        rows = (await conn.execute(_FINISH_RELEASING, _parameters(requests))).all()
    for row in rows:
        if row.kind == "finished":
            result.finished.append(row)
        elif row.kind == "released":
            result.released.append((str(row.id), row.scheduled_for))
        else:
            result.raced.add(str(row.id))
    return result


def _batch_json(requests: list[Finish]) -> str:
    """The ``batch`` parameter of the statements above. A row leaves out its NULL fields, which
    ``json_to_recordset`` reads as NULL: less JSON to write, send and parse (most outcomes have no error, no result
    and no new due time)."""
    rows = []
    for r in requests:
        row: dict[str, Any] = {
            "id": r.entry_id,
            "token": r.lease_token,
            "status": r.status,
            "retry_increment": r.retry_increment,
            "attempt_increment": 0,
        }
        if r.completed_at is not None:
            row["completed_at"] = iso(r.completed_at)
        if r.result_payload is not None:
            row["result_payload"] = r.result_payload
        if r.due is not None:
            row["due"] = iso(r.due)
        if r.error_message is not None:
            row["error_message"] = r.error_message
        a = r.attempt
        if a is not None:
            row["attempt_increment"] = 1
            row["started_at"] = row["a_started"] = iso(a.started_at)
            row["a_number"] = a.attempt
            row["a_worker"] = a.worker_id
            # The attempt's end is most often the entry's completion time, converted once.
            row["a_finished"] = row.get("completed_at") if a.finished_at is r.completed_at else iso(a.finished_at)
            row["a_outcome"] = a.outcome
            if a.error is not None:
                row["a_error"] = a.error
        rows.append(row)
    return json.dumps(rows)


def iso(value: datetime | None) -> str | None:
    """A timestamp parameter as ISO 8601 text (JSON has no timestamps); a naive one is refused."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value.isoformat()} cannot be stored; use UTC-aware datetimes")
    return value.isoformat()
