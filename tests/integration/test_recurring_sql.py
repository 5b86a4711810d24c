"""Recurring schedules on SQLite and PostgreSQL: the memory scenarios, plus concurrent declarations by many stores."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import recurring_scenarios as scenarios
from scheduling_app import App, Record, make_app

from scheduling import ManualClock, ScheduledCommandStatus
from stores import SqlStore


@pytest.fixture
async def sql_app(sql_url: str) -> AsyncIterator[App]:
    async with SqlStore(sql_url) as store:
        yield make_app(store=store)


async def test_two_workers_over_a_simulated_day(sql_url: str) -> None:
    async with SqlStore(sql_url) as first_store, SqlStore(sql_url) as second_store:
        first = make_app(store=first_store, worker_id="worker-1")
        second = make_app(store=second_store, clock=first.clock, worker_id="worker-2")
        # Five-minute steps (every occurrence is on one) keep it quick; the memory test steps minute by minute.
        await scenarios.simulated_day(first, [first, second], step=timedelta(minutes=5))


@pytest.mark.parametrize("policy", ["skip", "run_once", "run_all"])
async def test_misfire_policies_after_a_three_hour_downtime(sql_app: App, policy: str) -> None:
    await scenarios.downtime(sql_app, policy)


async def test_declaring_again_is_idempotent_and_a_change_is_a_new_generation(sql_app: App) -> None:
    await scenarios.upsert(sql_app)


async def test_pause_resume_and_unschedule(sql_app: App) -> None:
    await scenarios.pause_resume_unschedule(sql_app)


async def test_an_invalid_declaration_stores_nothing(sql_app: App) -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        await sql_app.scheduler.schedule_recurring("x", Record(value="x"), cron="@daily", timezone="Nowhere/Land")
    await scenarios.assert_nothing_stored(sql_app)


async def test_four_stores_declaring_one_schedule_at_once_store_it_once(sql_url: str) -> None:
    clock = ManualClock(scenarios.MONDAY)
    stores = [SqlStore(sql_url) for _ in range(4)]
    for store in stores:
        await store.open()
    try:
        apps = [make_app(store=store, clock=clock, worker_id=f"w{i}") for i, store in enumerate(stores)]
        declared = await asyncio.gather(
            *(a.scheduler.schedule_recurring("every5", Record(value="e"), interval=timedelta(minutes=5)) for a in apps)
        )
        assert {s.generation for s in declared} == {1}
        assert len(await stores[0].list_schedules()) == 1
        assert (await stores[0].count_by_status())[ScheduledCommandStatus.PENDING] == 1
    finally:
        for store in stores:
            await store.close()
