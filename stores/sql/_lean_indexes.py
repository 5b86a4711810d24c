"""Schema step 12, ``lean_entry_indexes``: fewer index entries written per row version of an entry.

Every row version of an entry (its insert, its claim, its outcome: none of them a HOT update, since each changes an
indexed column) adds an entry to every index whose predicate the row meets. Version 11 had four that most row
versions wrote for nothing; version 12 replaces three of them (PostgreSQL; SQLite where it can):

- ids were indexed twice, by the unique constraint (the database's collation, for ``id = ...``) and by
  ``ix_scheduled_commands_id_pattern`` (``text_pattern_ops``, for "ids starting with"): one unique index with
  ``text_pattern_ops`` answers both (``ux_scheduled_commands_id``);
- ``ix_scheduled_commands_finished`` (status, completed_at) held pending and running entries too: only the ones
  with a finish time now (``ix_scheduled_commands_finished_at``), which every query of it bounds;
- the GIN trigram index of error messages (when ``pg_trgm`` is installed) held a NULL item per row version: only
  the messages now (``ix_scheduled_commands_errors_trgm``).

The fourth, the unique constraint on ``idempotency_key`` (every entry, most with a NULL key), stays: processes of
version 11 still running during a rolling upgrade insert with ``ON CONFLICT (idempotency_key)``, which PostgreSQL
cannot match to a partial index. The inserts already name the predicate (``WHERE idempotency_key IS NOT NULL``), so
a later step can make it partial.

On PostgreSQL the new indexes are built ``CONCURRENTLY`` before the step's transaction (as step 11's), which then
drops the old ones. SQLite keeps its UNIQUE constraints on ``id`` and ``idempotency_key``: they are part of its
CREATE TABLE, and dropping one means rebuilding the table.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ._search_indexes import (
    OLD_ID_PATTERN_INDEX,
    OLD_TRIGRAM_INDEX,
    build_concurrently,
    build_each_concurrently,
    create_search_indexes,
)
from ._tables import ENTRIES, FINISHED_INDEX

__all__ = ["OLD_FINISHED_INDEX", "build_lean_concurrently", "lean_entry_indexes"]

#: The index of finished entries of schema versions 1 to 11, holding every entry.
OLD_FINISHED_INDEX = "ix_scheduled_commands_finished"
_ID_INDEX = "ux_scheduled_commands_id"
#: The unique constraints of the older CREATE TABLE that the step replaces (PostgreSQL), by column.
_CONSTRAINED = ("id",)
_UNIQUE_CONSTRAINTS = text(
    "SELECT c.conname FROM pg_constraint c JOIN pg_attribute a"
    " ON a.attrelid = c.conrelid AND c.conkey = ARRAY[a.attnum]::int2[]"
    " WHERE c.conrelid = 'scheduled_commands'::regclass AND c.contype = 'u' AND a.attname = :column"
)
#: The step's PostgreSQL indexes: name and definition, as ``ENTRIES`` declares them.
_POSTGRESQL: tuple[tuple[str, str], ...] = (
    (_ID_INDEX, "UNIQUE ON scheduled_commands (id text_pattern_ops)"),
    (FINISHED_INDEX, "ON scheduled_commands (status, completed_at) WHERE completed_at IS NOT NULL"),
)


async def _wanted(conn: AsyncConnection) -> list[tuple[str, str]]:
    return list(_POSTGRESQL)


async def build_lean_concurrently(engine: AsyncEngine, lock_key: int) -> None:
    """PostgreSQL, before the step's transaction: build its indexes without blocking writes (a database of version
    10 or older gets step 11's search indexes in their version-12 form first: the partial trigram index)."""
    await build_concurrently(engine, lock_key)
    await build_each_concurrently(engine, lock_key, _wanted)


async def lean_entry_indexes(conn: AsyncConnection) -> None:
    """Version 12: create the step's indexes that are missing (none when built concurrently), drop the ones they
    replace."""
    finished = next(index for index in ENTRIES.indexes if index.name == FINISHED_INDEX)
    await conn.run_sync(lambda sync: finished.create(sync, checkfirst=True))
    if conn.dialect.name != "postgresql":
        await conn.execute(text(f"DROP INDEX IF EXISTS {OLD_FINISHED_INDEX}"))
        return
    for name, how in _POSTGRESQL:
        create = "CREATE UNIQUE INDEX" if how.startswith("UNIQUE ") else "CREATE INDEX"
        await conn.execute(text(f"{create} IF NOT EXISTS {name} {how.removeprefix('UNIQUE ')}"))
    await create_search_indexes(conn)
    for column in _CONSTRAINED:
        for name in (await conn.execute(_UNIQUE_CONSTRAINTS, {"column": column})).scalars().all():
            await conn.execute(text(f'ALTER TABLE scheduled_commands DROP CONSTRAINT "{name}"'))
    for name in (OLD_FINISHED_INDEX, OLD_ID_PATTERN_INDEX, OLD_TRIGRAM_INDEX):
        await conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
