"""The background service claims entries due within ``CLAIM_AHEAD`` (started at their due time) and prefetches
entries beyond its free slots (started when a slot frees up)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from scheduling_app import START, Block, Record, eventually, make_app, status

from scheduling import ScheduledCommandStatus, ScheduleOptions
from scheduling.service import CLAIM_AHEAD
from stores import MemoryStore, SqlStore
from stores.base import ScheduledCommandStore

S = ScheduledCommandStatus
HALF = CLAIM_AHEAD / 2


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ScheduledCommandStore]:
    opened: ScheduledCommandStore = (
        MemoryStore() if request.param == "memory" else SqlStore(f"sqlite:///{tmp_path}/s.db")
    )
    async with opened:
        yield opened


async def test_entry_due_soon_is_claimed_ahead_and_started_at_its_due_time(store: ScheduledCommandStore) -> None:
    """Due within CLAIM_AHEAD: claimed under a lease at once, run only when the clock reaches its due time."""
    app = make_app(store=store)
    soon = await app.scheduler.schedule(Record(value="soon"), ScheduleOptions(delay=HALF))
    later = await app.scheduler.schedule(Record(value="later"), ScheduleOptions(delay=CLAIM_AHEAD * 3))
    async with app.service:

        async def soon_is_claimed() -> bool:
            return (await status(app, soon)).status is S.PROCESSING

        await eventually(soon_is_claimed)
        held = await status(app, soon)
        assert (held.lease_owner, held.lease_token is not None) == ("worker-1", True)
        assert (await status(app, later)).status is S.PENDING  # beyond the horizon: not claimed
        await asyncio.sleep(0.02)
        assert app.log.records == []
        app.clock.advance(HALF - timedelta(microseconds=1))
        await asyncio.sleep(0.02)
        assert app.log.records == []  # one microsecond early: still waiting
        app.clock.advance(timedelta(microseconds=1))

        async def soon_completed() -> bool:
            return (await status(app, soon)).status is S.COMPLETED

        await eventually(soon_completed)
    assert app.log.records == ["soon"]
    [attempt] = await app.scheduler.get_attempts(soon)
    assert attempt.started_at == START + HALF  # the attempt starts at the due time, not at the claim
    assert (await status(app, later)).status is S.PENDING


async def test_entry_claimed_ahead_is_released_on_stop_without_an_attempt(store: ScheduledCommandStore) -> None:
    """Stopping does not wait for an entry claimed ahead (not even shutdown_grace): it goes back to PENDING."""
    app = make_app(store=store, shutdown_grace=timedelta(minutes=10))
    soon = await app.scheduler.schedule(Record(value="soon"), ScheduleOptions(delay=HALF))
    await app.service.start()

    async def claimed() -> bool:
        return (await status(app, soon)).status is S.PROCESSING

    await eventually(claimed)
    async with asyncio.timeout(5):  # far less than the grace: the entry is released at once
        await app.service.stop()
    entry = await status(app, soon)
    assert (entry.status, entry.retry_count, entry.attempt_count, entry.lease_token) == (S.PENDING, 0, 0, None)
    assert await app.scheduler.get_attempts(soon) == []
    assert app.log.records == []


async def test_claim_ahead_keeps_priority_order_and_concurrency(store: ScheduledCommandStore) -> None:
    """Entries due together within the horizon, one slot: claimed and run by priority, one at a time."""
    app = make_app(store=store, max_concurrency=1)
    for priority in (0, 10, 5):
        await app.scheduler.schedule(Record(value=str(priority)), ScheduleOptions(delay=HALF, priority=priority))
    async with app.service:

        async def counts() -> dict[S, int]:
            return await store.count_by_status()

        async def two_claimed() -> bool:
            return (await counts())[S.PROCESSING] == 2

        await eventually(two_claimed)
        assert (await counts())[S.PENDING] == 1  # one running (or waiting for its due time) and one prefetched
        app.clock.advance(HALF)

        async def all_done() -> bool:
            return (await counts())[S.COMPLETED] == 3

        await eventually(all_done)
    assert app.log.records == ["10", "5", "0"]


async def test_entry_claimed_ahead_is_not_taken_by_another_worker(store: ScheduledCommandStore) -> None:
    """A claimed-ahead entry holds its lease: another worker finds nothing to claim, and the holder runs it."""
    app = make_app(store=store)
    other = make_app(store=store, clock=app.clock, worker_id="other")
    soon = await app.scheduler.schedule(Record(value="soon"), ScheduleOptions(delay=HALF))
    async with app.service:

        async def claimed() -> bool:
            return (await status(app, soon)).status is S.PROCESSING

        await eventually(claimed)
        app.clock.advance(HALF)
        assert await other.service.run_until_idle() == 0

        async def completed() -> bool:
            return (await status(app, soon)).status is S.COMPLETED

        await eventually(completed)
    [attempt] = await app.scheduler.get_attempts(soon)
    assert attempt.worker_id == "worker-1"
    assert other.log.records == []


async def test_prefetched_entry_waits_for_a_slot_keeps_its_lease_and_is_released_on_stop(
    store: ScheduledCommandStore,
) -> None:
    """One slot: the running command and one more claimed (prefetched). The prefetched one does not run while the
    slot is taken, its lease is renewed with the running one's, and stopping gives it back without an attempt."""
    app = make_app(store=store, max_concurrency=1, shutdown_grace=timedelta(milliseconds=20))
    running = await app.scheduler.schedule(Block(key="running"))
    waiting = await app.scheduler.schedule(Record(value="waiting"))
    await app.service.start()
    try:

        async def prefetched() -> bool:
            return app.log.started == ["running"] and (await status(app, waiting)).status is S.PROCESSING

        await eventually(prefetched)
        assert app.service.running == 1
        before = (await status(app, waiting)).lease_expires_at
        app.clock.advance(app.settings.heartbeat_interval)

        async def renewed() -> bool:
            return (await status(app, waiting)).lease_expires_at != before

        await eventually(renewed)
        assert app.log.records == []  # still waiting for the slot
    finally:
        await app.service.stop()
    for command_id in (running, waiting):
        entry = await status(app, command_id)
        assert (entry.status, entry.retry_count, entry.lease_token) == (S.PENDING, 0, None)
        assert await app.scheduler.get_attempts(command_id) == []
    assert app.log.records == []
