"""Schema step 13, ``pending_due_index``: PostgreSQL's index of PENDING entries by due time moves under a predicate
that no claim implies.

Version 12's ``ix_scheduled_commands_next_due`` (scheduled_for) ``WHERE status = 'PENDING'`` serves "when is the
next entry due?" and ranges of due times of PENDING entries. But every scan of the claim states
``status = 'PENDING'`` too, so the planner may read any of them through it; it does so when the table's statistics
say that almost nothing is PENDING (analyzed while only finished entries were stored, then a burst arrived), the
smallest index then looking cheapest. Each of the claim's probes for queues, types, priorities and first rows then
read every due entry and sorted them: 162 ms per claim at 100,000 pending against 0.5 ms, until the next
``ANALYZE`` (with generic and custom plans alike).

Version 13's ``ix_scheduled_commands_pending_due`` has the predicate ``status = 'PENDING' AND scheduled_for >=
'-infinity'``. The second condition is true of every due time (none sorts before '-infinity'), so stating it
changes no query's rows; the queries this index serves state it (the next due time, the watcher's first read, the
counts and searches of PENDING entries due before a time, ``ANY_DUE_TIME_SQL``), and no claim does, so the claim's
scans can use only the routed index, whatever the statistics say. It is written exactly as often as the old one
(one entry per PENDING row version).

On PostgreSQL the new index is built ``CONCURRENTLY`` before the step's transaction, and the old one then dropped
``CONCURRENTLY`` (a plain ``DROP INDEX`` in the transaction would take the table's ACCESS EXCLUSIVE lock, and
queued behind a long transaction hold up every claim and outcome meanwhile); the step's transaction drops it only
when that did not run. Processes of version 12 still running during a rolling upgrade claim as before (their claims,
too, can no longer pick the wrong index), but their reads of the next due time, which a worker makes before every
sleep, no longer find an index on due times: each reads the PENDING entries through another index, or the whole
table when most of it is PENDING, until they are replaced. Finish the rollout promptly, or stop the old workers
before ``cqrs-scheduling migrate``. SQLite keeps its index (its queries name it, ``INDEXED BY``); its schema version
becomes 13 all the same.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ._search_indexes import build_each_concurrently
from ._tables import PENDING_DUE_INDEX, PENDING_DUE_SQL

__all__ = ["OLD_NEXT_DUE_INDEX", "build_pending_due_concurrently", "pending_due_index"]

#: PostgreSQL's index of PENDING entries by due time of schema versions 1 to 12 (SQLite's, still).
OLD_NEXT_DUE_INDEX = "ix_scheduled_commands_next_due"
_DEFINITION = f"ON scheduled_commands (scheduled_for) WHERE {PENDING_DUE_SQL}"


async def _wanted(conn: AsyncConnection) -> list[tuple[str, str]]:
    return [(PENDING_DUE_INDEX, _DEFINITION)]


async def build_pending_due_concurrently(engine: AsyncEngine, lock_key: int) -> None:
    """PostgreSQL, before the step's transaction: build the new index and drop the old one, without blocking
    writes."""
    await build_each_concurrently(engine, lock_key, _wanted, replaced=(OLD_NEXT_DUE_INDEX,))


async def pending_due_index(conn: AsyncConnection) -> None:
    """Version 13 (PostgreSQL): create the new index and drop the old one, where the concurrent part did not (a
    no-op after it)."""
    if conn.dialect.name != "postgresql":
        return
    await conn.execute(text(f"CREATE INDEX IF NOT EXISTS {PENDING_DUE_INDEX} {_DEFINITION}"))
    await conn.execute(text(f"DROP INDEX IF EXISTS {OLD_NEXT_DUE_INDEX}"))
