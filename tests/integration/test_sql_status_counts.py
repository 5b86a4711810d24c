"""Counts per status at any size on SQL (``_status_counts.py``): each status counted within the bound through its
index; above it PostgreSQL estimates from its statistics (flagged), or counts exactly when it has none; SQLite
counts exactly. The bound is small here, so that a few rows cross it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
from sqlalchemy.engine import make_url

from scheduling.entries import ScheduledCommandEntry, ScheduledCommandStatus
from stores.base import StatusCount
from stores.sql import SqlStore

PENDING, CANCELLED = ScheduledCommandStatus.PENDING, ScheduledCommandStatus.CANCELLED
BASE = datetime(2026, 1, 1, tzinfo=UTC)


def make_entry() -> ScheduledCommandEntry:
    return ScheduledCommandEntry(
        id=str(uuid.uuid4()),
        command_type="tests.Ping",
        payload="{}",
        status=PENDING,
        scheduled_for=BASE,
        created_at=BASE,
    )


def _analyze(url: str) -> None:
    """What autovacuum does in time: refresh the table's statistics."""
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("ANALYZE scheduled_commands")


async def test_a_large_status_is_estimated_on_postgresql_and_exact_on_sqlite(sql_url: str) -> None:
    async with SqlStore(sql_url) as store:
        await store.add([make_entry() for _ in range(40)])
        for entry in [make_entry(), make_entry()]:
            await store.add([entry])
            await store.cancel(entry.id, now=BASE)
        postgresql = sql_url.startswith("postgresql")
        if postgresql:
            _analyze(sql_url)
        counts = await store.count_by_status_estimated(exact_up_to=5)
        assert counts[CANCELLED] == StatusCount(2)
        assert counts[ScheduledCommandStatus.EXPIRED] == StatusCount(0)
        # ANALYZE reads every row of so small a table: the estimate is the count, but still flagged as an estimate.
        assert counts[PENDING] == (StatusCount(40, exact=False) if postgresql else StatusCount(40))
        assert await store.count_by_status_estimated(exact_up_to=40) == {
            status: StatusCount(n) for status, n in (await store.count_by_status()).items()
        }


async def test_statistics_older_than_the_rows_are_scaled_and_never_below_the_bound(
    postgres_url: str, new_postgres_database: Callable[[str, str], str]
) -> None:
    """PostgreSQL: the estimate follows the table's growth since ``ANALYZE`` (rows per page, times the pages now),
    and a status the bounded count found above the bound is never estimated below it."""
    url = new_postgres_database(postgres_url, "stale_stats")
    async with SqlStore(url) as store:
        await store.add([make_entry() for _ in range(8)])
        _analyze(url)
        await store.add([make_entry() for _ in range(30)])
        counts = await store.count_by_status_estimated(exact_up_to=20)
        assert not counts[PENDING].exact
        assert counts[PENDING].count >= 21


async def test_without_statistics_a_large_status_is_counted_exactly(
    postgres_url: str, new_postgres_database: Callable[[str, str], str]
) -> None:
    """PostgreSQL: a table never analysed has no statistics to estimate from: the count is exact (slower, never
    wrong)."""
    async with SqlStore(new_postgres_database(postgres_url, "no_stats")) as store:
        await store.add([make_entry() for _ in range(12)])
        counts = await store.count_by_status_estimated(exact_up_to=5)
        assert counts[PENDING] == StatusCount(12)
