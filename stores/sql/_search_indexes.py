"""The indexes of the entries search, part of the versioned schema (step ``entries_search_indexes``), and how
PostgreSQL builds them on a big table without blocking writes.

- ``ix_scheduled_commands_created_seq`` (created_at, seq), every backend (declared in ``_tables.py``): a created
  range is listed newest first by this index instead of walking every newer row.
- PostgreSQL only, when the ``pg_trgm`` extension is installed: the GIN trigram index of error messages (see
  ``_search.py``), of the entries that have one (schema version 12: before, every row version of every entry wrote
  a NULL item into it). "Ids starting with" is one probe of the unique index of ids, ``text_pattern_ops`` since
  schema version 12 (version 11 built a second index of ids for it, ``ix_scheduled_commands_id_pattern``).

A new database gets them with its tables (empty: instantly). Upgrading an existing PostgreSQL database,
``build_concurrently`` first builds them with ``CREATE INDEX CONCURRENTLY`` on a connection of its own, outside any
transaction (PostgreSQL refuses CONCURRENTLY inside one), holding the index-build advisory lock at session level
(``INDEX_BUILD_LOCK_KEY``, not the schema lock: see there) so that one opener builds while the others wait; workers
of the older version keep claiming and finishing, and may even open the store, meanwhile. The
migration step then finds them. A build interrupted midway leaves an invalid index: the next attempt drops it and
builds again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ._tables import ENTRIES

__all__ = [
    "OLD_ID_PATTERN_INDEX",
    "OLD_TRIGRAM_INDEX",
    "TRIGRAM_INDEX",
    "build_concurrently",
    "build_each_concurrently",
    "create_search_indexes",
]

#: The GIN trigram index of error messages (PostgreSQL with ``pg_trgm`` only), partial since schema version 12.
TRIGRAM_INDEX = "ix_scheduled_commands_errors_trgm"
#: Its name in schema version 11, where it held every entry.
OLD_TRIGRAM_INDEX = "ix_scheduled_commands_error_trgm"
#: The prefix index of ids of schema version 11, replaced by the unique index of ids with ``text_pattern_ops``.
OLD_ID_PATTERN_INDEX = "ix_scheduled_commands_id_pattern"
#: The created index of the search's first version (created_at alone), replaced by ``CREATED_INDEX``.
OLD_CREATED_INDEX = "ix_scheduled_commands_created"
CREATED_INDEX = "ix_scheduled_commands_created_seq"

#: Name and definition (after ``ON scheduled_commands``) of each PostgreSQL index; the trigram one last.
_POSTGRESQL: tuple[tuple[str, str], ...] = (
    (CREATED_INDEX, "(created_at, seq)"),
    (TRIGRAM_INDEX, "USING gin (error_message gin_trgm_ops) WHERE error_message IS NOT NULL"),
)
_HAS_TRIGRAMS = text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
_IS_VALID = text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)")
_TRY_LOCK = text("SELECT pg_try_advisory_lock(:key)")
_UNLOCK = text("SELECT pg_advisory_unlock(:key)")
#: How often a waiting opener asks for the index-build lock again. (Waiting inside ``pg_advisory_lock`` would hold a
#: snapshot, which the concurrent build itself waits for: a deadlock.)
_LOCK_POLL_SECONDS = 0.2


async def _wanted(conn: AsyncConnection) -> list[tuple[str, str]]:
    trigrams = (await conn.execute(_HAS_TRIGRAMS)).first() is not None
    return [(name, f"ON scheduled_commands {how}") for name, how in _POSTGRESQL if trigrams or name != TRIGRAM_INDEX]


async def create_search_indexes(conn: AsyncConnection) -> None:
    """Create the search indexes that are missing, in ``conn``'s transaction (a new or empty table, or an upgrade
    whose concurrent build already made them: then nothing is built here)."""
    await conn.execute(text(f"DROP INDEX IF EXISTS {OLD_CREATED_INDEX}"))
    if conn.dialect.name != "postgresql":
        created = next(index for index in ENTRIES.indexes if index.name == CREATED_INDEX)
        await conn.run_sync(lambda sync: created.create(sync, checkfirst=True))
        return
    for name, how in await _wanted(conn):
        await conn.execute(text(f"CREATE INDEX IF NOT EXISTS {name} {how}"))


async def build_concurrently(engine: AsyncEngine, lock_key: int) -> None:
    """PostgreSQL: build the missing search indexes without blocking writes (see the module's docstring)."""
    await build_each_concurrently(engine, lock_key, _wanted)


async def build_each_concurrently(
    engine: AsyncEngine, lock_key: int, wanted: Callable[[AsyncConnection], Awaitable[list[tuple[str, str]]]]
) -> None:
    """PostgreSQL: build each missing index of ``wanted`` (name, everything after the name, such as
    ``ON scheduled_commands (id)``; a prefix ``UNIQUE `` for a unique one) with ``CREATE INDEX CONCURRENTLY``, holding
    the index-build advisory lock (``lock_key``) at session level; an invalid one (an interrupted build) is dropped
    and built again."""
    async with engine.connect() as connection:
        conn = await connection.execution_options(isolation_level="AUTOCOMMIT")
        while not (await conn.execute(_TRY_LOCK, {"key": lock_key})).scalar_one():  # noqa: ASYNC110 (polled: see above)
            await asyncio.sleep(_LOCK_POLL_SECONDS)
        try:
            for name, how in await wanted(conn):
                valid = (await conn.execute(_IS_VALID, {"name": name})).scalar_one_or_none()
                if valid is False:  # left by a build that was interrupted
                    await conn.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {name}"))
                create = "CREATE UNIQUE INDEX" if how.startswith("UNIQUE ") else "CREATE INDEX"
                on = how.removeprefix("UNIQUE ")
                await conn.execute(text(f"{create} CONCURRENTLY IF NOT EXISTS {name} {on}"))
        finally:
            await conn.execute(_UNLOCK, {"key": lock_key})
