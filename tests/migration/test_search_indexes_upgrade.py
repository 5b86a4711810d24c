"""The schema step ``entries_search_indexes``: a database of the version before it, holding entries, gets the search
indexes; on PostgreSQL they are built ``CONCURRENTLY``, so that writers of running workers go on meanwhile, and an
index left invalid by an interrupted build is built again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from scheduling.entries import ScheduledCommandEntry, ScheduledCommandStatus
from stores.sql import SqlStore
from stores.sql._migrations import MIGRATIONS
from stores.sql._search_indexes import (
    CREATED_INDEX,
    OLD_CREATED_INDEX,
    OLD_ID_PATTERN_INDEX,
    OLD_TRIGRAM_INDEX,
    TRIGRAM_INDEX,
)
from stores.sql._tables import SCHEMA_VERSION

STEP = next(step.version for step in MIGRATIONS if step.name == "entries_search_indexes")
BASE = datetime(2026, 1, 1, tzinfo=UTC)


def entries(n: int) -> list[ScheduledCommandEntry]:
    return [
        ScheduledCommandEntry(
            id=str(uuid.uuid4()),
            command_type="tests.Ping",
            payload="{}",
            status=ScheduledCommandStatus.PENDING,
            scheduled_for=BASE,
            created_at=BASE,
        )
        for _ in range(n)
    ]


async def database_before_the_step(url: str, n: int) -> None:
    """A database as the version before the step left it: ``n`` entries, the created_at index of the first search,
    none of the step's indexes."""
    async with SqlStore(url) as store:
        await store.add(entries(n))
        async with store.engine.begin() as conn:
            for name in (CREATED_INDEX, TRIGRAM_INDEX):
                await conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
            await conn.execute(text(f"CREATE INDEX {OLD_CREATED_INDEX} ON scheduled_commands (created_at)"))
            await conn.execute(text("UPDATE scheduled_commands_schema SET version = :v"), {"v": STEP - 1})


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def indexes(url: str) -> dict[str, bool]:
    """Index name -> valid, of the entries table."""
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE i.indrelid = 'scheduled_commands'::regclass"
        ).fetchall()
    return {str(name): bool(valid) for name, valid in rows}


async def test_sqlite_gets_the_created_index(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'before.db'}"
    await database_before_the_step(url, 5)
    async with SqlStore(url) as store:
        assert await store.migrate() == (STEP - 1, SCHEMA_VERSION)
        async with store.engine.connect() as conn:
            names = {row[0] for row in await conn.execute(text("SELECT name FROM sqlite_master WHERE type='index'"))}
        assert CREATED_INDEX in names and OLD_CREATED_INDEX not in names
        assert sum((await store.count_by_status()).values()) == 5


async def test_postgresql_builds_concurrently_while_writers_go_on(
    postgres_url: str, new_postgres_database: Callable[[str, str], str]
) -> None:
    """The build waits for a transaction older than it (as CONCURRENTLY does) while another connection writes to
    the table unhindered; then every index is there and valid, the interrupted one rebuilt."""
    url = new_postgres_database(postgres_url, "search_indexes")
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    await database_before_the_step(url, 20)
    # An index left invalid by an interrupted build:
    with psycopg.connect(libpq(url), autocommit=True) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {TRIGRAM_INDEX} ON scheduled_commands (command_type)")
    assert indexes(url)[TRIGRAM_INDEX] is False

    with psycopg.connect(libpq(url)) as old_reader, psycopg.connect(libpq(url), autocommit=True) as writer:
        old_reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        old_reader.execute("SELECT count(*) FROM scheduled_commands").fetchone()  # holds a snapshot
        opening = asyncio.create_task(SqlStore(url).migrate())
        deadline = asyncio.get_running_loop().time() + 30
        while not writer.execute(
            "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX CONCURRENTLY%' AND wait_event_type = 'Lock'"
        ).fetchone():
            assert asyncio.get_running_loop().time() < deadline and not opening.done(), "the build never waited"
            await asyncio.sleep(0.05)
        writer.execute("SET lock_timeout = '5s'")
        writer.execute("UPDATE scheduled_commands SET priority = priority + 1")  # not blocked by the build
        old_reader.commit()
        assert await opening == (STEP - 1, SCHEMA_VERSION)

    found = indexes(url)
    assert {CREATED_INDEX, TRIGRAM_INDEX} <= set(found) and all(found.values()), found
    # The later step replaces the version-11 forms of the trigram and id prefix indexes (test_lean_indexes_upgrade):
    assert not {OLD_CREATED_INDEX, OLD_ID_PATTERN_INDEX, OLD_TRIGRAM_INDEX} & set(found)
