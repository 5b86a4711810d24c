"""Emptying a PostgreSQL database that tests share (the run's database, a module's), so each test starts as on a
new one: every row of every table deleted, except the schema version, and every sequence restarted.

``DELETE``, not ``TRUNCATE``: a test leaves a few rows, which ``DELETE`` removes in about a millisecond a table, while
``TRUNCATE`` creates new files for each table and index (tens of milliseconds a table, waiting for every open
transaction on them); the suite empties a database a few hundred times. Tables are found in the catalog, so a table
added by a later schema version is emptied without a change here, and a database with no schema yet is fine.
"""

from __future__ import annotations

import psycopg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from stores.sql._tables import SCHEMA

__all__ = ["EMPTY_POSTGRES", "empty_postgres", "empty_postgres_async"]

#: One statement that empties the current schema's tables but the schema version and restarts its sequences (the
#: ``seq`` keys start at 1 again, as after ``TRUNCATE ... RESTART IDENTITY``). No ``%`` in it: drivers read that as a
#: placeholder.
EMPTY_POSTGRES = f"""
DO $$
DECLARE
    found text;
BEGIN
    FOR found IN
        SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename <> '{SCHEMA.name}'
    LOOP
        EXECUTE 'DELETE FROM ' || quote_ident(found);
    END LOOP;
    FOR found IN SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema() LOOP
        EXECUTE 'ALTER SEQUENCE ' || quote_ident(found) || ' RESTART';
    END LOOP;
END
$$
"""


def empty_postgres(url: str) -> None:
    """Empty the PostgreSQL database at ``url`` (a store URL) as described above."""
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(EMPTY_POSTGRES.encode())


async def empty_postgres_async(conn: AsyncConnection) -> None:
    """Empty the database of ``conn`` (a store engine's connection, in its transaction) as described above."""
    await conn.exec_driver_sql(EMPTY_POSTGRES)
