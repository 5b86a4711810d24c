"""Creating the schema and checking its version, at open, under the backend's schema lock."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from stores.errors import SchemaVersionError

from ._backend import Backend
from ._tables import ATTEMPTS, ENTRIES, SCHEDULES, SCHEMA, SCHEMA_VERSION

__all__ = ["ensure_schema"]


async def ensure_schema(conn: AsyncConnection, backend: Backend, shown_url: str) -> None:
    """Create the tables and indexes that are missing and the version row, in ``conn``'s write transaction.

    Raises:
        SchemaVersionError: the database was created by a newer version of the library.
    """
    await backend.lock_schema(conn)
    await conn.run_sync(_create_tables)
    version = (await conn.execute(select(SCHEMA.c.version).where(SCHEMA.c.id == 1))).scalar_one_or_none()
    if version is None:
        await conn.execute(insert(SCHEMA).values(id=1, version=SCHEMA_VERSION, updated_at=datetime.now(UTC)))
    elif version > SCHEMA_VERSION:
        raise SchemaVersionError(shown_url, version, SCHEMA_VERSION)
    # version < SCHEMA_VERSION: migrations go here, one step per version, in this transaction.


def _create_tables(connection: Connection) -> None:
    for table in (ENTRIES, ATTEMPTS, SCHEDULES, SCHEMA):
        table.create(connection, checkfirst=True)
        for index in table.indexes:  # an index added later is created on databases that predate it
            index.create(connection, checkfirst=True)
