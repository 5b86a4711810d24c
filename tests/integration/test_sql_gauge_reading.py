"""``read_gauges()`` on SQLite and PostgreSQL: the status counts, the next due time and the running count of one
moment. Read one after the other, a claim committed between them showed the entry running and still overdue, the
reading an alert on a fleet that is down trusts (tests/metrics/test_metrics_worker_process.py failed that way)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stores.entries import ScheduledCommandEntry, ScheduledCommandStatus
from stores.sql import SqlStore
from stores.sql import _queries as queries

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=1)


async def test_a_claim_committed_during_the_reading_is_not_half_seen(sql_url: str) -> None:
    """Inside the reading's snapshot the claim made meanwhile by another store is invisible to every statement; the
    next reading sees all of it."""
    entry = ScheduledCommandEntry(
        id="due",
        command_type="t.T",
        payload="{}",
        status=ScheduledCommandStatus.PENDING,
        scheduled_for=NOW,
        created_at=NOW,
    )
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
