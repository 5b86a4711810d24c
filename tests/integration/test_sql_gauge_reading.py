"""``read_gauges()`` on SQLite and PostgreSQL: the status counts, the next due time and the running count of one
moment. Read one after the other, a claim committed between them showed the entry running and still overdue, the
reading an alert on a fleet that is down trusts (tests/metrics/test_metrics_worker_process.py failed that way).
Bounded (``exact_up_to``), a large status is estimated on PostgreSQL, PROCESSING never is, and the reading is still
one snapshot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy.engine import make_url

from stores.entries import ScheduledCommandEntry, ScheduledCommandStatus
from stores.sql import SqlStore
from stores.sql import _gauges as gauges
from stores.sql import _queries as queries

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=1)


PENDING, PROCESSING = ScheduledCommandStatus.PENDING, ScheduledCommandStatus.PROCESSING


def make_entry(entry_id: str) -> ScheduledCommandEntry:
    return ScheduledCommandEntry(
        id=entry_id, command_type="t.T", payload="{}", status=PENDING, scheduled_for=NOW, created_at=NOW
    )


def _analyze(url: str) -> None:
    """What autovacuum does in time: refresh the table's statistics."""
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("ANALYZE scheduled_commands")


async def test_a_claim_committed_during_the_reading_is_not_half_seen(sql_url: str) -> None:
    """Inside the reading's snapshot the claim made meanwhile by another store is invisible to every statement; the
    next reading sees all of it."""
    entry = make_entry("due")
    async with SqlStore(sql_url) as reader, SqlStore(sql_url) as worker:
        await reader.add([entry])
        async with reader._snapshot() as conn:  # what read_gauges() reads through
            before = await queries.count_by_status(conn)
            (claimed,) = await worker.claim_due(now=NOW, limit=1, worker_id="w", lease_duration=LEASE)
            assert claimed.id == "due"
            assert await reader._backend.next_due_at(conn) == NOW  # still PENDING, as the counts said
            assert await queries.count_running(conn, NOW) == 0
        assert before[ScheduledCommandStatus.PENDING] == 1
        reading = await reader.read_gauges(now=NOW)
    assert (reading.counts[ScheduledCommandStatus.PROCESSING], reading.next_due_at, reading.running) == (1, None, 1)


async def test_a_claim_committed_during_a_bounded_reading_is_not_half_seen(sql_url: str) -> None:
    """The bounded reading (counts through the index, estimates) reads in the same one snapshot: read again after a
    claim committed by another store, within that snapshot, it is unchanged; the next reading sees the claim."""
    async with SqlStore(sql_url) as reader, SqlStore(sql_url) as worker:
        await reader.add([make_entry(f"due-{n}") for n in range(3)])
        async with reader._snapshot() as conn:  # what read_gauges() reads through
            before = await gauges.read_gauges(conn, reader._backend, NOW, 1)
            assert len(await worker.claim_due(now=NOW, limit=2, worker_id="w", lease_duration=LEASE)) == 2
            assert await gauges.read_gauges(conn, reader._backend, NOW, 1) == before
        after = await reader.read_gauges(now=NOW, exact_up_to=1)
    assert (before.counts[PROCESSING], before.running, before.next_due_at) == (0, 0, NOW)
    assert (after.counts[PROCESSING], after.running, after.counts[PENDING]) == (2, 2, 1)


async def test_a_bounded_reading_estimates_a_large_status_on_postgresql_but_never_processing(sql_url: str) -> None:
    """Above ``exact_up_to`` PostgreSQL estimates a status from its statistics and says so in ``estimated``;
    PROCESSING, above the bound too, is counted exactly (the stuck gauge subtracts the running entries from it).
    SQLite has no statistics: every count exact. Without a bound every count is exact on both."""
    async with SqlStore(sql_url) as store:
        await store.add([make_entry(f"e-{n}") for n in range(12)])
        await store.claim_due(now=NOW, limit=5, worker_id="w", lease_duration=LEASE)
        postgresql = sql_url.startswith("postgresql")
        if postgresql:
            _analyze(sql_url)
        bounded = await store.read_gauges(now=NOW, exact_up_to=3)
        exact = await store.read_gauges(now=NOW)
    assert bounded.estimated == (frozenset({PENDING}) if postgresql else frozenset())
    # ANALYZE reads every row of so small a table: the estimate is the count, but flagged as an estimate.
    assert (bounded.counts[PENDING], bounded.counts[PROCESSING], bounded.running) == (7, 5, 5)
    assert (exact.counts, exact.estimated) == (bounded.counts, frozenset())


@pytest.mark.parametrize("bound", [-1, -100])
async def test_a_negative_bound_is_refused_naming_it(sql_url: str, bound: int) -> None:
    async with SqlStore(sql_url) as store:
        with pytest.raises(ValueError, match=f"exact_up_to must not be negative, got {bound}"):
            await store.read_gauges(now=NOW, exact_up_to=bound)
