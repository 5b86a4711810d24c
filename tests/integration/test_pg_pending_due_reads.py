"""PostgreSQL: the reads of PENDING entries by due time can use the index of PENDING due times (schema version 13).

That index's predicate, ``status = 'PENDING' AND scheduled_for >= '-infinity'``, is one no claim implies, so a
claim never reads through it; the reads it serves state it (its second condition is true of every due time): the
next due time, the counts per command type of entries due before a time (the overview's waiting entries) and the
search of PENDING entries due before a time. Without it such a read has no index on due times and scans the table.
Each statement is captured as the store sends it and explained with its own parameters, sequential scans off.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from pg_plans import indexes_read, libpq
from sqlalchemy import event

from scheduling import ScheduledCommandStatus
from stores.entries import ScheduledCommandEntry
from stores.filters import EntryFilter, EntryPage
from stores.sql import SqlStore
from stores.sql._tables import PENDING_DUE_INDEX


@pytest.fixture(name="sql_url")
def fresh_database(postgres_url: str, new_postgres_database: Callable[[str, str], str]) -> str:
    """A new database for each test: it analyzes the table, and statistics would stay with a shared database."""
    return new_postgres_database(postgres_url, "due_reads")


NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def _entry(due: datetime) -> ScheduledCommandEntry:
    return ScheduledCommandEntry(
        id=str(uuid.uuid4()),
        command_type="tests.Job",
        payload="{}",
        status=ScheduledCommandStatus.PENDING,
        scheduled_for=due,
        created_at=NOW,
    )


async def _statements_of(store: SqlStore, read: Callable[[], Awaitable[object]]) -> list[tuple[str, Any]]:
    """The statements (and parameters) ``read`` sends through the store's engine that read the entries' table."""
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if "scheduled_commands" in statement and "scheduled_for" in statement:
            sent.append((statement, parameters))

    event.listen(store.engine.sync_engine, "before_cursor_execute", capture)
    try:
        await read()
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", capture)
    assert sent, "the read sent no statement on the entries' due times"
    return sent


@pytest.mark.parametrize(
    "read",
    [
        pytest.param(lambda store: store.next_due_at(), id="next_due_at"),
        pytest.param(
            lambda store: store.count_by_command_type(ScheduledCommandStatus.PENDING, due_before=NOW),
            id="count_by_command_type",
        ),
        pytest.param(
            lambda store: store.count_by_command_type(ScheduledCommandStatus.PENDING, due_before=NOW, queue="default"),
            id="count_by_command_type_of_a_queue",
        ),
        pytest.param(
            lambda store: store.list_matching(
                EntryFilter(status=ScheduledCommandStatus.PENDING, due_before=NOW), EntryPage(limit=10, offset=0)
            ),
            id="search",
        ),
    ],
)
async def test_reads_of_pending_due_times_can_use_their_index(
    sql_url: str, read: Callable[[SqlStore], Awaitable[object]]
) -> None:
    async with SqlStore(sql_url) as store:
        # A few due before NOW among many due later: the index of due times is the read's best path, if it may use
        # it at all (else it walks every PENDING entry of another index).
        await store.add([_entry(NOW + timedelta(minutes=minutes)) for minutes in range(-5, 2_000)])
        with psycopg.connect(libpq(sql_url)) as conn:
            conn.execute("ANALYZE scheduled_commands")
        for statement, parameters in await _statements_of(store, lambda: read(store)):
            assert PENDING_DUE_INDEX in indexes_read(sql_url, statement, parameters), statement


async def test_the_condition_that_lets_them_use_it_leaves_out_no_row(sql_url: str) -> None:
    """``scheduled_for >= '-infinity'`` is true of every due time: a PENDING row holding '-infinity' (unreadable, as
    a hostile write leaves it) or 'infinity' is still counted, by type and by the search, as before the condition."""
    async with SqlStore(sql_url) as store:
        readable = _entry(NOW - timedelta(minutes=1))
        low, high = _entry(NOW), _entry(NOW)
        await store.add([readable, low, high])
        with psycopg.connect(libpq(sql_url), autocommit=True) as conn:
            conn.execute("UPDATE scheduled_commands SET scheduled_for = '-infinity' WHERE id = %s", (low.id,))
            conn.execute("UPDATE scheduled_commands SET scheduled_for = 'infinity' WHERE id = %s", (high.id,))
        assert await store.count_by_command_type(ScheduledCommandStatus.PENDING, due_before=NOW) == {"tests.Job": 2}
        due_before = EntryFilter(status=ScheduledCommandStatus.PENDING, due_before=NOW)
        assert await store.count_matching(due_before, at_most=None) == 2
        due_after = EntryFilter(status=ScheduledCommandStatus.PENDING, due_after=NOW)
        assert await store.count_matching(due_after, at_most=None) == 1  # 'infinity'
        assert await store.next_due_at() == readable.scheduled_for  # '-infinity' hides no real due time
