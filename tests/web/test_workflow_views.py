"""A workflow in the admin API and on the entry page: an entry's parents and dependants, a group's progress and its
callback (memory, SQLite and Redis stores)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from scheduling_app import Add, App, Record
from test_pages import get_page

from scheduling import ScheduleOptions
from stores import MemoryStore, RedisStore, ScheduledCommandStore, SqlStore


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ScheduledCommandStore]:
    """The dashboard's stores (``conftest.py``), and Redis."""
    opened: ScheduledCommandStore
    if request.param == "memory":
        opened = MemoryStore()
    elif request.param == "sqlite":
        opened = SqlStore(f"sqlite:///{tmp_path / 'dashboard.db'}")
    else:
        opened = RedisStore(request.getfixturevalue("redis_url"), prefix=request.getfixturevalue("redis_prefix"))
    async with opened:
        yield opened


async def test_a_group_callback_shows_its_members_and_progress(client: httpx.AsyncClient, scheduling_app: App) -> None:
    scheduler = scheduling_app.scheduler
    group = await scheduler.schedule_group([Add(a=1, b=1), Add(a=2, b=2)], then=Record(value="done"))
    await scheduling_app.service.run_until_idle()  # runs the members and then the callback
    detail = (await client.get(f"/api/entries/{group.callback_id}")).json()
    assert [parent["id"] for parent in detail["parents"]] == list(group.member_ids)
    assert {parent["status"] for parent in detail["parents"]} == {"COMPLETED"}
    assert detail["parent_count"] == 2 and detail["dependant_count"] == 0
    member = (await client.get(f"/api/entries/{group.member_ids[0]}")).json()
    assert [dependant["id"] for dependant in member["dependants"]] == [group.callback_id]
    page = await get_page(client, f"/entries/{group.member_ids[0]}")
    dependants = page.by_id("entry-dependants")
    assert dependants is not None and group.callback_id in dependants.text()


async def test_a_waiting_entry_shows_how_many_parents_are_left(client: httpx.AsyncClient, scheduling_app: App) -> None:
    scheduler = scheduling_app.scheduler
    first = await scheduler.schedule(Add(a=1, b=1))
    later = await scheduler.schedule(Add(a=2, b=2), ScheduleOptions(delay=3600))
    child = await scheduler.schedule(Record(value="after both"), ScheduleOptions(after=[first, later]))
    await scheduling_app.service.run_until_idle()  # runs ``first`` only
    page = await get_page(client, f"/entries/{child}")
    status = page.by_id("entry-status")
    assert status is not None and status.attrs["data-status"] == "WAITING"
    progress = page.by_id("entry-progress")
    assert progress is not None and "1 of 2 have met its condition, 1 to go" in progress.text()
    parents = page.by_id("entry-parents")
    assert parents is not None and first in parents.text() and later in parents.text()
    assert page.by_id("detail-cancel") is not None  # a WAITING entry can be cancelled from its page
    cancelled = await client.post(f"/api/entries/{child}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["cancelled"] is True
