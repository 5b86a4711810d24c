"""PostgreSQL: a process of the older version that opens the store while this version builds a step's indexes
``CONCURRENTLY`` neither waits for the build nor deadlocks with it.

A process of the older version opens by taking the schema's advisory lock inside its transaction
(``pg_advisory_xact_lock``), holding a snapshot while it waits; ``CREATE INDEX CONCURRENTLY`` waits for every
snapshot older than its own to end. When the build held the schema lock, the two waited for each other and
PostgreSQL ended one of them as a deadlock (the older process failed to start, or the upgrade did). The build holds
a lock of its own now. Here the older opener is played by its lock statement, on a connection of its own, while the
build is held up by a transaction that began before it.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
from pg_plans import libpq
from sqlalchemy import text

from scheduling.entries import ScheduledCommandEntry, ScheduledCommandStatus
from stores.sql import SqlStore
from stores.sql._migrations import MIGRATIONS
from stores.sql._pending_due import OLD_NEXT_DUE_INDEX
from stores.sql._postgresql import SCHEMA_LOCK_KEY
from stores.sql._tables import PENDING_DUE_INDEX, SCHEMA_VERSION

STEP = next(step.version for step in MIGRATIONS if step.name == "pending_due_index")
WAIT_S = 20.0


async def version_12_database(url: str) -> None:
    now = datetime.now(UTC)
    async with SqlStore(url) as store:
        await store.add(
            [
                ScheduledCommandEntry(
                    id=str(uuid.uuid4()),
                    command_type="tests.Ping",
                    payload="{}",
                    status=ScheduledCommandStatus.PENDING,
                    scheduled_for=now,
                    created_at=now,
                )
            ]
        )
        async with store.engine.begin() as conn:
            await conn.execute(text(f"DROP INDEX {PENDING_DUE_INDEX}"))
            await conn.execute(
                text(
                    f"CREATE INDEX {OLD_NEXT_DUE_INDEX} ON scheduled_commands (scheduled_for) WHERE status = 'PENDING'"
                )
            )
            await conn.execute(text("UPDATE scheduled_commands_schema SET version = :v"), {"v": STEP - 1})


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def build_is_waiting(admin: psycopg.Connection) -> bool:
    row = admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'CREATE INDEX CONCURRENTLY%' AND wait_event_type ="
        " 'Lock'"
    ).fetchone()
    return row is not None and row[0] > 0


def test_an_older_opener_during_a_concurrent_build_goes_on_and_the_upgrade_completes(
    postgres_url: str, new_postgres_database: Callable[[str, str], str]
) -> None:
    url = new_postgres_database(postgres_url, "older_opener")
    asyncio.run(version_12_database(url))
    with (
        psycopg.connect(libpq(url), autocommit=True) as admin,
        psycopg.connect(libpq(url), autocommit=True) as before_build,
        psycopg.connect(libpq(url), autocommit=True) as older,
    ):
        # A transaction whose snapshot is older than the build: the build waits for it to end.
        before_build.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        before_build.execute("SELECT count(*) FROM scheduled_commands")
        outcome: dict[str, object] = {}

        def upgrade() -> None:
            async def migrate() -> tuple[int | None, int]:
                async with SqlStore(url) as store:
                    return await store.migrate()

            try:
                outcome["migrated"] = asyncio.run(migrate())
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                outcome["migrated"] = exc

        upgrading = threading.Thread(target=upgrade)
        upgrading.start()
        try:
            wait_for(lambda: build_is_waiting(admin), "the concurrent build to wait for the older transaction")
            # The older version's opening: its schema lock, in its transaction, with a snapshot while it waits.
            older.execute("SET lock_timeout = '10s'")
            older.execute("BEGIN")
            older.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            older.execute("SELECT version FROM scheduled_commands_schema")
            older.execute("COMMIT")
        finally:
            before_build.execute("COMMIT")
            upgrading.join(timeout=60)
    assert not upgrading.is_alive(), "the upgrade did not finish"
    assert outcome["migrated"] == (STEP - 1, SCHEMA_VERSION), outcome
