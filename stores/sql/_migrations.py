"""Schema migrations: ordered, named steps, each taking the schema from one version to the next.

Like procrastinate's numbered migration files and Django's ``operations`` lists, but in one module and run by the
store itself (no Alembic: the library owns seven tables and a migration is a few statements that must work the same
on SQLite and PostgreSQL). ``upgrade`` runs, in the caller's write transaction, every step above the version the
database has; the caller holds the schema lock (PostgreSQL: an advisory lock; SQLite: ``BEGIN IMMEDIATE``, the
write lock), so processes opening an old database at once migrate it exactly once: the first one migrates and
commits, the others wait for the lock and then find the new version.

A step never loses a row: it adds columns and fills them from what the rows already hold. Indexes that a step's
columns need are created after the steps, with every other missing index (``_schema.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ._lean_indexes import build_lean_concurrently, lean_entry_indexes
from ._pending_due import build_pending_due_concurrently, pending_due_index
from ._search_indexes import build_concurrently, create_search_indexes
from ._tables import AUDIT, DEPENDENCIES, ENTRIES, OUTCOME_HOURS, OUTCOME_ROLLUP, WORKERS

__all__ = ["MIGRATIONS", "Migration", "upgrade"]

logger = logging.getLogger("stores.sql")


@dataclass(frozen=True, slots=True)
class Migration:
    """One step: ``apply`` takes a database at ``version - 1`` to ``version``."""

    version: int
    name: str
    apply: Callable[[AsyncConnection], Awaitable[None]]
    #: PostgreSQL: run before the migration's transaction, outside any transaction, with the engine and the key of
    #: the index-build advisory lock (to take at session level): indexes built ``CONCURRENTLY`` there do not block
    #: writes on a big table. ``apply`` must still do everything when this did not run (SQLite, or an interrupted
    #: build). It runs before every transactional step of the upgrade, so it may use only what a version-1 schema
    #: already has.
    concurrently: Callable[[AsyncEngine, int], Awaitable[None]] | None = None


async def _occurrence_generation_column(conn: AsyncConnection) -> None:
    """Version 2: the schedule generation of a recurring occurrence becomes a column of its own.

    Version 1 kept it only inside the occurrence's idempotency key, ``recurring:{name}:{generation}:{time}``; this
    step reads it from there once, so that nothing reads it from a key again.
    """
    await conn.execute(text("ALTER TABLE scheduled_commands ADD COLUMN occurrence_generation INTEGER"))
    rows = (
        await conn.execute(
            select(ENTRIES.c.seq, ENTRIES.c.recurring_name, ENTRIES.c.idempotency_key).where(
                ENTRIES.c.recurring_name.is_not(None), ENTRIES.c.idempotency_key.is_not(None)
            )
        )
    ).all()
    generations = []
    for seq, name, key in rows:
        generation = _generation_in_v1_key(str(name), str(key))
        if generation is not None:
            generations.append({"row_seq": seq, "generation": generation})
    if generations:
        await conn.execute(
            update(ENTRIES)
            .where(ENTRIES.c.seq == bindparam("row_seq"))
            .values(occurrence_generation=bindparam("generation")),
            generations,
        )


def _generation_in_v1_key(name: str, key: str) -> int | None:
    prefix = f"recurring:{name}:"
    if not key.startswith(prefix):
        return None
    generation, _, _ = key[len(prefix) :].partition(":")
    return int(generation) if generation.isdigit() else None


async def _workers_table(conn: AsyncConnection) -> None:
    """The worker registry: a table of its own, empty until workers register (no row of an older table changes)."""
    await conn.run_sync(lambda sync: WORKERS.create(sync, checkfirst=True))


async def _trace_context_column(conn: AsyncConnection) -> None:
    """Version 4: the trace context at ``schedule()``, for the attempt spans' links. Older entries have none."""
    await conn.execute(text("ALTER TABLE scheduled_commands ADD COLUMN trace_context TEXT"))


async def _queue_and_lock_columns(conn: AsyncConnection) -> None:
    """Queues and locks: every entry gets a queue (``default`` for the rows already stored) and a lock (none).

    The claim's index becomes one by queue and command type (created after the steps); the ``scheduled_queues``
    table (paused queues and limits) is created with every missing table.
    """
    await conn.execute(text("ALTER TABLE scheduled_commands ADD COLUMN queue VARCHAR(100) DEFAULT 'default' NOT NULL"))
    await conn.execute(text("ALTER TABLE scheduled_commands ADD COLUMN lock VARCHAR(256)"))
    await conn.execute(text("DROP INDEX IF EXISTS ix_scheduled_commands_due"))


async def _cancel_requested_column(conn: AsyncConnection) -> None:
    """Version 6: a cancel request for a running entry (``cancel(id, running=True)``). No older entry has one."""
    timestamp = ENTRIES.c.cancel_requested_at.type.compile(dialect=conn.dialect)
    await conn.execute(text(f"ALTER TABLE scheduled_commands ADD COLUMN cancel_requested_at {timestamp}"))


async def _audit_table(conn: AsyncConnection) -> None:
    """The audit trail of operator actions: a table of its own, empty until the first action."""
    await conn.run_sync(lambda sync: AUDIT.create(sync, checkfirst=True))


async def _outcome_rollup_tables(conn: AsyncConnection) -> None:
    """Outcomes per hour and command type for the dashboard's history: two tables of their own, empty until a
    reader asks for a settled hour (each hour is rolled up then, from the entries and attempts still stored)."""
    await conn.run_sync(lambda sync: OUTCOME_ROLLUP.create(sync, checkfirst=True))
    await conn.run_sync(lambda sync: OUTCOME_HOURS.create(sync, checkfirst=True))


async def _queue_claim_slots(conn: AsyncConnection) -> None:
    """Claims of limited queues in one statement on PostgreSQL: an entry's running slot of its queue (none for the
    rows already stored, so entries PROCESSING at the upgrade count against ``max_running`` without holding a slot).

    The unique index on running slots and the ``scheduled_queue_starts`` table (a rate limited queue's start slots,
    empty until claimed) are created after the steps, with every missing index and table.
    """
    await conn.execute(text("ALTER TABLE scheduled_commands ADD COLUMN queue_slot INTEGER"))


async def _dependencies_table_and_columns(conn: AsyncConnection) -> None:
    """Dependencies (``ScheduleOptions.after``, groups): the table of (parent, dependant) pairs, and per entry its
    count of pending parents and whether it has dependants. No older entry has either: zero and false."""
    await conn.execute(text("ALTER TABLE scheduled_commands ADD COLUMN pending_parents INTEGER DEFAULT 0 NOT NULL"))
    await conn.execute(text("ALTER TABLE scheduled_commands ADD COLUMN has_dependants BOOLEAN DEFAULT false NOT NULL"))
    await conn.run_sync(lambda sync: DEPENDENCIES.create(sync, checkfirst=True))


async def _entries_search_indexes(conn: AsyncConnection) -> None:
    """The entries search's indexes (created range, id prefix, error-text trigrams): on PostgreSQL built beforehand
    without blocking writes (``concurrently``), so that this finds them; see ``_search_indexes.py``."""
    await create_search_indexes(conn)


#: Every step, in order; the last one's version is ``SCHEMA_VERSION``.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(2, "occurrence_generation_column", _occurrence_generation_column),
    Migration(3, "workers_table", _workers_table),
    Migration(4, "trace_context_column", _trace_context_column),
    Migration(5, "queue_and_lock_columns", _queue_and_lock_columns),
    Migration(6, "cancel_requested_column", _cancel_requested_column),
    Migration(7, "audit_table", _audit_table),
    Migration(8, "outcome_rollup_tables", _outcome_rollup_tables),
    Migration(9, "queue_claim_slots", _queue_claim_slots),
    Migration(10, "dependencies_table_and_columns", _dependencies_table_and_columns),
    Migration(11, "entries_search_indexes", _entries_search_indexes, concurrently=build_concurrently),
    Migration(12, "lean_entry_indexes", lean_entry_indexes, concurrently=build_lean_concurrently),
    Migration(13, "pending_due_index", pending_due_index, concurrently=build_pending_due_concurrently),
)


async def upgrade(conn: AsyncConnection, found: int, shown_url: str) -> None:
    """Run every step above ``found``, in ``conn``'s transaction (all or nothing)."""
    for step in MIGRATIONS:
        if step.version > found:
            logger.info(
                "migrating %s to schema version %d (%s)",
                shown_url,
                step.version,
                step.name,
                extra={"action": "migrate", "version": step.version},
            )
            await step.apply(conn)
