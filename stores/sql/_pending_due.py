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
'-infinity'``. The second condition is true of every due time (none sorts before '-infinity'), so a count or search
that states it (``ANY_DUE_TIME_SQL``) keeps its rows; the next due time states ``scheduled_for > '-infinity'``,
which implies it (an unreadable '-infinity' row must not hide the real next due time). No claim states either, so
the claim's scans can use only the routed index, whatever the statistics say. It is written exactly as often as
the old one (one entry per PENDING row version).

On PostgreSQL the new index is built ``CONCURRENTLY`` before the step's transaction, which only checks that it is
there (creating it when that build did not run); the old index is dropped ``CONCURRENTLY`` after the new version is
committed, by the process that migrated or the next one of this version to open the store
(``drop_replaced_concurrently``). Never inside the transaction: a ``DROP INDEX`` or ``CREATE INDEX`` there locks the
table, and queued behind a long transaction it would hold up every claim and outcome; and never before the commit,
when a process of version 12 opening the store would create it again (it declares it). Processes of version 12
still running once it is dropped claim as before (their claims, too, can no longer pick the wrong index), but their
reads of the next due time, made before every sleep, and their counts of PENDING entries by due time no longer find
an index on due times: each reads the PENDING entries through another index, or the whole table when most of it is
PENDING, until they are replaced. SQLite keeps its index (its queries name it, ``INDEXED BY``); its schema version
becomes 13 all the same.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ._search_indexes import build_each_concurrently
from ._tables import PENDING_DUE_INDEX, PENDING_DUE_SQL

__all__ = ["OLD_NEXT_DUE_INDEX", "build_pending_due_concurrently", "drop_replaced_concurrently", "pending_due_index"]

#: PostgreSQL's index of PENDING entries by due time of schema versions 1 to 12 (SQLite's, still).
OLD_NEXT_DUE_INDEX = "ix_scheduled_commands_next_due"
_DEFINITION = f"ON scheduled_commands (scheduled_for) WHERE {PENDING_DUE_SQL}"
_IS_VALID = text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)")
_EXISTS = text("SELECT to_regclass(:name) IS NOT NULL")


async def _wanted(conn: AsyncConnection) -> list[tuple[str, str]]:
    return [(PENDING_DUE_INDEX, _DEFINITION)]


async def build_pending_due_concurrently(engine: AsyncEngine, lock_key: int) -> None:
    """PostgreSQL, before the step's transaction: build the new index without blocking writes."""
    await build_each_concurrently(engine, lock_key, _wanted)


async def pending_due_index(conn: AsyncConnection) -> None:
    """Version 13 (PostgreSQL): the new index, created here only when the concurrent build did not run or was
    interrupted (``CREATE INDEX IF NOT EXISTS`` would lock the table before finding it there)."""
    if conn.dialect.name != "postgresql":
        return
    valid = (await conn.execute(_IS_VALID, {"name": PENDING_DUE_INDEX})).scalar_one_or_none()
    if valid is True:
        return
    if valid is False:  # left invalid by an interrupted concurrent build
        await conn.execute(text(f"DROP INDEX {PENDING_DUE_INDEX}"))
    await conn.execute(text(f"CREATE INDEX {PENDING_DUE_INDEX} {_DEFINITION}"))


async def drop_replaced_concurrently(engine: AsyncEngine) -> None:
    """PostgreSQL, once the schema is at version 13 (committed): drop version 12's index if it is still there
    (a catalog lookup otherwise), without blocking writes. A drop interrupted midway leaves it invalid; the next
    opening drops it."""
    async with engine.connect() as connection:
        conn = await connection.execution_options(isolation_level="AUTOCOMMIT")
        if (await conn.execute(_EXISTS, {"name": OLD_NEXT_DUE_INDEX})).scalar_one():
            await conn.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {OLD_NEXT_DUE_INDEX}"))
