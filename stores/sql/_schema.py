"""Creating the schema, checking its version and migrating it, at open, under the backend's schema lock."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert, inspect, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stores.errors import SchemaVersionError

from ._backend import Backend
from ._migrations import MIGRATIONS, upgrade
from ._pending_due import drop_replaced_concurrently
from ._search_indexes import create_search_indexes
from ._tables import (
    ATTEMPTS,
    AUDIT,
    DEPENDENCIES,
    ENTRIES,
    OUTCOME_HOURS,
    OUTCOME_ROLLUP,
    QUEUE_STARTS,
    QUEUES,
    SCHEDULES,
    SCHEMA,
    SCHEMA_VERSION,
    WORKERS,
)

__all__ = ["build_concurrently", "ensure_schema", "finish_concurrently"]


async def build_concurrently(engine: AsyncEngine, backend: Backend, lock_key: int) -> None:
    """PostgreSQL, before ``ensure_schema``: for an existing database older than this version, run the
    ``concurrently`` part of each step it lacks (indexes built without blocking writes), outside any transaction."""
    if backend.name != "postgresql":
        return
    async with engine.connect() as conn:
        found = await _stored_version(conn)
    if found is None or found >= SCHEMA_VERSION:
        return
    for step in MIGRATIONS:
        if step.version > found and step.concurrently is not None:
            await step.concurrently(engine, lock_key)


async def finish_concurrently(engine: AsyncEngine, backend: Backend) -> None:
    """PostgreSQL, after ``ensure_schema`` committed: what a step leaves for once no process of an older version can
    open the store, done without blocking writes (dropping an index the older version declares: before the commit,
    such a process would create it again)."""
    if backend.name == "postgresql":
        await drop_replaced_concurrently(engine)


async def ensure_schema(conn: AsyncConnection, backend: Backend, shown_url: str) -> int | None:
    """Bring the database to ``SCHEMA_VERSION`` in ``conn``'s write transaction: create a new schema, or migrate an
    older one, then create whatever index is missing. Returns the version found (None: the schema was created).

    Raises:
        SchemaVersionError: the database was created by a newer version of the library.
    """
    await backend.lock_schema(conn)
    found = await _stored_version(conn)
    if found is not None and found > SCHEMA_VERSION:
        raise SchemaVersionError(shown_url, found, SCHEMA_VERSION)
    if found is not None and found < SCHEMA_VERSION:
        await upgrade(conn, found, shown_url)
        await conn.execute(
            update(SCHEMA).where(SCHEMA.c.id == 1).values(version=SCHEMA_VERSION, updated_at=datetime.now(UTC))
        )
    await conn.run_sync(_create_tables)
    if found is None:
        await create_search_indexes(conn)  # PostgreSQL's own ones, on the new (empty) table
        await conn.execute(insert(SCHEMA).values(id=1, version=SCHEMA_VERSION, updated_at=datetime.now(UTC)))
    return found


async def _stored_version(conn: AsyncConnection) -> int | None:
    if not await conn.run_sync(lambda sync: inspect(sync).has_table(SCHEMA.name)):
        return None
    version = (await conn.execute(select(SCHEMA.c.version).where(SCHEMA.c.id == 1))).scalar_one_or_none()
    return int(version) if version is not None else None


def _create_tables(connection: Connection) -> None:
    for table in (
        ENTRIES,
        ATTEMPTS,
        SCHEDULES,
        SCHEMA,
        WORKERS,
        QUEUES,
        QUEUE_STARTS,
        AUDIT,
        DEPENDENCIES,
        OUTCOME_ROLLUP,
        OUTCOME_HOURS,
    ):
        table.create(connection, checkfirst=True)
        for index in table.indexes:  # an index added later is created on databases that predate it
            index.create(connection, checkfirst=True)
