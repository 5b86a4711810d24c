"""The schema step ``pending_due_index`` (version 13): on PostgreSQL, a database of version 12 gets the index of
PENDING entries by due time under its new predicate and loses the old one; the next due time is read through it, a
version-12 process still reads a right one, and the indexes are those of a new database. SQLite keeps its index."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from pg_plans import index_definitions, indexes_read, libpq
from sqlalchemy import text

from scheduling.entries import ScheduledCommandEntry, ScheduledCommandStatus
from stores.sql import SqlStore
from stores.sql._migrations import MIGRATIONS
from stores.sql._pending_due import OLD_NEXT_DUE_INDEX
from stores.sql._tables import NEXT_DUE_SQL, PENDING_DUE_INDEX, SCHEMA_VERSION

STEP = next(step.version for step in MIGRATIONS if step.name == "pending_due_index")
BASE = datetime(2026, 1, 1, tzinfo=UTC)
#: What version 12 had instead of the new index.
_V12_POSTGRESQL = (
    f"DROP INDEX {PENDING_DUE_INDEX}",
    f"CREATE INDEX {OLD_NEXT_DUE_INDEX} ON scheduled_commands (scheduled_for) WHERE status = 'PENDING'",
)
#: The next due time as a process of version 12 reads it.
_V12_NEXT_DUE = "SELECT min(scheduled_for) FROM scheduled_commands WHERE status = 'PENDING'"


def entry(due: datetime) -> ScheduledCommandEntry:
    return ScheduledCommandEntry(
        id=str(uuid.uuid4()),
        command_type="tests.Ping",
        payload="{}",
        status=ScheduledCommandStatus.PENDING,
        scheduled_for=due,
        created_at=BASE,
    )


async def version_12_database(url: str) -> None:
    """A database as version 12 left it (on PostgreSQL), holding entries due in 1, 2 and 3 hours, the first one
    claimed."""
    async with SqlStore(url) as store:
        await store.add([entry(BASE + timedelta(hours=hours)) for hours in (1, 2, 3)])
        claimed = await store.claim_due(
            now=BASE + timedelta(hours=1), limit=1, worker_id="w", lease_duration=timedelta(minutes=1)
        )
        assert len(claimed) == 1
        async with store.engine.begin() as conn:
            if store.is_postgresql:
                for statement in _V12_POSTGRESQL:
                    await conn.execute(text(statement))
            await conn.execute(text("UPDATE scheduled_commands_schema SET version = :v"), {"v": STEP - 1})


async def test_postgresql_version_12_gets_the_index_of_a_new_database(
    postgres_url: str, new_postgres_database: Callable[[str, str], str]
) -> None:
    url = new_postgres_database(postgres_url, "due_v12")
    fresh = new_postgres_database(postgres_url, "due_new")
    await version_12_database(url)
    assert OLD_NEXT_DUE_INDEX in index_definitions(url) and PENDING_DUE_INDEX not in index_definitions(url)

    async with SqlStore(url) as store:
        assert await store.migrate() == (STEP - 1, SCHEMA_VERSION)
        assert await store.next_due_at() == BASE + timedelta(hours=2)  # the claimed one is not PENDING
    assert OLD_NEXT_DUE_INDEX not in index_definitions(url)  # dropped once the new version was committed
    # Were a drop interrupted (or the old index made again), the next opening of this version drops it.
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute(_V12_POSTGRESQL[1])
    async with SqlStore(url) as store:
        await store.open()
    async with SqlStore(fresh) as store:
        await store.open()

    upgraded = index_definitions(url)
    assert upgraded == index_definitions(fresh)
    assert OLD_NEXT_DUE_INDEX not in upgraded
    assert upgraded[PENDING_DUE_INDEX].endswith(
        "(scheduled_for) WHERE (((status)::text = 'PENDING'::text) AND (scheduled_for >= '-infinity'::timestamp with"
        " time zone))"
    )
    next_due = f"SELECT min(scheduled_for) FROM scheduled_commands WHERE {NEXT_DUE_SQL}"
    assert PENDING_DUE_INDEX in indexes_read(url, next_due)
    # A process of version 12, still running during a rolling upgrade, still reads the right next due time.
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        assert conn.execute(_V12_NEXT_DUE).fetchone() == (BASE + timedelta(hours=2),)


async def test_sqlite_keeps_its_index_of_pending_entries(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v12.db'}"
    await version_12_database(url)
    async with SqlStore(url) as store:
        assert await store.migrate() == (STEP - 1, SCHEMA_VERSION)
        async with store.engine.connect() as conn:
            rows = await conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index'"))
            found = {str(name): str(sql) for name, sql in rows}
        assert await store.next_due_at() == BASE + timedelta(hours=2)
    assert found[OLD_NEXT_DUE_INDEX].endswith("WHERE status = 'PENDING'")
    assert PENDING_DUE_INDEX not in found
