"""The schema step ``lean_entry_indexes`` (version 12): a database of version 11, holding entries, gets the partial
and merged indexes and loses the ones they replace; the store then works as before (held keys skipped, ids unique,
prefix search, purge of finished entries), and its indexes are those of a new database."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from scheduling.entries import ScheduledCommandEntry, ScheduledCommandStatus
from stores.sql import SqlStore
from stores.sql._lean_indexes import OLD_FINISHED_INDEX
from stores.sql._migrations import MIGRATIONS
from stores.sql._search_indexes import OLD_ID_PATTERN_INDEX, OLD_TRIGRAM_INDEX, TRIGRAM_INDEX
from stores.sql._tables import FINISHED_INDEX, SCHEMA_VERSION

STEP = next(step.version for step in MIGRATIONS if step.name == "lean_entry_indexes")
ID_INDEX = "ux_scheduled_commands_id"
BASE = datetime(2026, 1, 1, tzinfo=UTC)


def entry(key: str | None = None, status: ScheduledCommandStatus = ScheduledCommandStatus.PENDING) -> Any:
    """A new entry; ``status`` and its error message are what its outcome will leave (see ``version_11_database``)."""
    return ScheduledCommandEntry(
        id=str(uuid.uuid4()),
        command_type="tests.Ping",
        payload="{}",
        status=status,
        scheduled_for=BASE,
        created_at=BASE,
        idempotency_key=key,
        error_message="boom: disk full" if status is ScheduledCommandStatus.FAILED else None,
    )


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


#: The PostgreSQL indexes and unique constraints of version 11 that version 12 replaces.
_V11_POSTGRESQL = (
    f"DROP INDEX {ID_INDEX}",
    f"DROP INDEX {FINISHED_INDEX}",
    f"DROP INDEX {TRIGRAM_INDEX}",
    "ALTER TABLE scheduled_commands ADD UNIQUE (id)",
    f"CREATE INDEX {OLD_FINISHED_INDEX} ON scheduled_commands (status, completed_at)",
    f"CREATE INDEX {OLD_ID_PATTERN_INDEX} ON scheduled_commands (id text_pattern_ops)",
    f"CREATE INDEX {OLD_TRIGRAM_INDEX} ON scheduled_commands USING gin (error_message gin_trgm_ops)",
)
_V11_SQLITE = (
    f"DROP INDEX {FINISHED_INDEX}",
    f"CREATE INDEX {OLD_FINISHED_INDEX} ON scheduled_commands (status, completed_at)",
)


async def version_11_database(url: str) -> list[ScheduledCommandEntry]:
    """A database as version 11 left it, holding pending, keyed and finished entries; returns them."""
    stored = [
        entry(),
        entry("order-1"),
        entry("order-2", ScheduledCommandStatus.COMPLETED),
        entry(status=ScheduledCommandStatus.FAILED),
    ]
    async with SqlStore(url) as store:
        await store.add(stored)
        async with store.engine.begin() as conn:
            for finished in stored[2:]:  # as their outcomes leave them
                await conn.execute(
                    text(
                        "UPDATE scheduled_commands SET status = :status, completed_at = :at, error_message = :error"
                        " WHERE id = :id"
                    ),
                    {"status": finished.status.value, "at": BASE, "error": finished.error_message, "id": finished.id},
                )
            for statement in _V11_POSTGRESQL if store.is_postgresql else _V11_SQLITE:
                await conn.execute(text(statement))
            await conn.execute(text("UPDATE scheduled_commands_schema SET version = :v"), {"v": STEP - 1})
    return stored


def postgresql_shape(url: str) -> tuple[dict[str, str], list[str]]:
    """Index name -> definition (valid ones only), and the unique constraints, of the entries table."""
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE i.indrelid = 'scheduled_commands'::regclass AND i.indisvalid"
        ).fetchall()
        constraints = conn.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'scheduled_commands'::regclass AND contype = 'u'"
        ).fetchall()
    return {str(name): str(how) for name, how in rows}, sorted(str(name) for (name,) in constraints)


async def the_store_still_works(url: str, stored: list[ScheduledCommandEntry]) -> None:
    async with SqlStore(url) as store:
        assert await store.migrate() == (SCHEMA_VERSION, SCHEMA_VERSION)
        again, plain = entry("order-1"), entry()
        assert await store.add([again, plain]) == [stored[1].id, plain.id]  # the held key skipped it
        assert await store.get(again.id) is None
        with pytest.raises(ValueError, match="an id already exists"):
            await store.add([stored[0]])  # an id already stored
        assert await store.ids_starting_with(stored[0].id[:8], limit=5) == [stored[0].id]
        assert await store.purge(older_than=BASE + timedelta(days=1)) == 2
        assert sum((await store.count_by_status()).values()) == 3


async def test_postgresql_version_11_is_upgraded_to_the_indexes_of_a_new_database(
    postgres_url: str, new_postgres_database: Callable[[str, str], str]
) -> None:
    url = new_postgres_database(postgres_url, "lean_v11")
    fresh = new_postgres_database(postgres_url, "lean_new")
    for database in (url, fresh):
        with psycopg.connect(libpq(database), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    stored = await version_11_database(url)
    old_indexes, old_constraints = postgresql_shape(url)
    assert {OLD_FINISHED_INDEX, OLD_ID_PATTERN_INDEX, OLD_TRIGRAM_INDEX} <= set(old_indexes)
    assert len(old_constraints) == 2

    async with SqlStore(url) as store:
        assert await store.migrate() == (STEP - 1, SCHEMA_VERSION)
    async with SqlStore(fresh) as store:
        await store.open()

    upgraded_shape, new_shape = postgresql_shape(url), postgresql_shape(fresh)
    assert upgraded_shape == new_shape
    found, constraints = upgraded_shape
    assert constraints == ["scheduled_commands_idempotency_key_key"]  # kept for version 11's inserts
    assert not {OLD_FINISHED_INDEX, OLD_ID_PATTERN_INDEX, OLD_TRIGRAM_INDEX} & set(found)
    assert "UNIQUE INDEX" in found[ID_INDEX] and "text_pattern_ops" in found[ID_INDEX]
    assert found[FINISHED_INDEX].endswith("WHERE (completed_at IS NOT NULL)")
    assert found[TRIGRAM_INDEX].endswith("WHERE (error_message IS NOT NULL)")
    await the_store_still_works(url, stored)
    # A process of version 11, still running during a rolling upgrade, inserts keyed entries as it did.
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        held = conn.execute(
            "INSERT INTO scheduled_commands (id, command_type, payload, status, priority, scheduled_for, created_at,"
            " retry_count, attempt_count, max_retries, idempotency_key) VALUES (%s, 'tests.Ping', '{}', 'PENDING', 0,"
            " now(), now(), 0, 0, 3, 'order-1') ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
            (str(uuid.uuid4()),),
        ).fetchall()
    assert held == []  # the key is held: skipped, not an error


async def test_sqlite_version_11_gets_the_partial_finished_index(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v11.db'}"
    stored = await version_11_database(url)
    async with SqlStore(url) as store:
        assert await store.migrate() == (STEP - 1, SCHEMA_VERSION)
        async with store.engine.connect() as conn:
            rows = await conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index'"))
            found = {str(name): str(sql) for name, sql in rows}
    assert OLD_FINISHED_INDEX not in found
    assert found[FINISHED_INDEX].endswith("WHERE completed_at IS NOT NULL")
    await the_store_still_works(url, stored)
