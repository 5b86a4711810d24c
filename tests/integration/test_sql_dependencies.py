"""Dependencies on the SQL stores, beyond the contract suite: a parent that is dead-lettered because its row cannot
be read (written behind the library's back) cancels its dependants like any dead letter; a dependant added by one
connection while another completes its parent is released whichever commits first."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from scheduling_app import Record, RecordHandler, make_app
from sqlalchemy import text

from scheduling import ScheduledCommandStatus, ScheduleOptions
from stores.dependencies import Dependency
from stores.entries import AttemptRecord, ScheduledCommandEntry
from stores.sql import SqlStore


async def test_a_parent_dead_lettered_as_unreadable_cancels_its_dependant(sql_url: str) -> None:
    async with SqlStore(sql_url) as store:
        app = make_app(store=store, handlers=[RecordHandler])
        parent = await app.scheduler.schedule(Record(value="parent"))
        child = await app.scheduler.schedule(Record(value="child"), ScheduleOptions(after=parent))
        unreadable = "'NaN'::double precision" if store.is_postgresql else "'NaN?'"
        async with store.engine.begin() as conn:
            await conn.execute(
                text(f"UPDATE scheduled_commands SET timeout_seconds = {unreadable} WHERE id = :id"), {"id": parent}
            )
        async with asyncio.timeout(10):
            await app.service.run_until_idle()
        parent_row = await store.list_entries(status=ScheduledCommandStatus.FAILED)
        assert [entry.id for entry in parent_row] == []  # the parent itself cannot be read, so is not listed
        cancelled = await store.get(child)
        assert cancelled is not None and cancelled.status is ScheduledCommandStatus.CANCELLED
        assert cancelled.error_message == f"ParentNotCompleted: parent {parent} ended FAILED"


@pytest.mark.parametrize("earlier", [0, 1], ids=["first_dependant", "second_dependant"])
async def test_a_dependant_added_while_its_parent_completes_is_never_left_waiting(sql_url: str, earlier: int) -> None:
    """Two store instances (two connections, as two processes): one completes a parent while the other adds a
    dependant of it, 30 times. Whichever commits first, the dependant ends PENDING, released exactly once. The
    parent had ``earlier`` dependants when claimed (PostgreSQL: with one, its outcome is the one statement that also
    releases its dependants; tests/integration/test_pg_chain_race.py forces the interleaving that would lose one)."""

    def entry(now: datetime) -> ScheduledCommandEntry:
        return ScheduledCommandEntry(
            id=str(uuid.uuid4()),
            command_type="tests.Job",
            payload="{}",
            status=ScheduledCommandStatus.PENDING,
            scheduled_for=now,
            created_at=now,
        )

    lease = timedelta(minutes=1)
    async with SqlStore(sql_url) as worker, SqlStore(sql_url) as producer:
        for _ in range(30):
            now = datetime.now(UTC)
            parent, child = entry(now), entry(now)
            first = [entry(now) for _ in range(earlier)]
            await worker.add([parent])
            if first:
                await producer.add_dependants(first, {e.id: Dependency((parent.id,)) for e in first})
            (claimed,) = await worker.claim_due(now=now, limit=1, worker_id="w", lease_duration=lease)
            assert claimed.lease_token is not None
            attempt = AttemptRecord(attempt=1, worker_id="w", started_at=now, finished_at=now, outcome="completed")
            completed, _ = await asyncio.gather(
                worker.complete(parent.id, claimed.lease_token, result_payload=None, attempt=attempt),
                producer.add_dependants([child], {child.id: Dependency((parent.id,))}),
            )
            assert completed
            for dependant in [*first, child]:
                released = await worker.get(dependant.id)
                assert released is not None and released.status is ScheduledCommandStatus.PENDING, released
                assert released.pending_parents == 0
            taken = await worker.claim_due(now=now, limit=10, worker_id="w", lease_duration=lease)
            assert sorted(e.id for e in taken) == sorted(e.id for e in [*first, child])
            for each in taken:
                assert each.lease_token is not None
                await worker.complete(each.id, each.lease_token, result_payload=None, attempt=attempt)
