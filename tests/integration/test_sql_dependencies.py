"""Dependencies on the SQL stores, beyond the contract suite: a parent that is dead-lettered because its row cannot
be read (written behind the library's back) cancels its dependants like any dead letter."""

from __future__ import annotations

import asyncio

from scheduling_app import Record, RecordHandler, make_app
from sqlalchemy import text

from scheduling import ScheduledCommandStatus, ScheduleOptions
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
