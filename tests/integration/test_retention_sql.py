"""Retention on real databases: two services, each with its own store (its own connections) on one database,
purging at the same moment split the work: together they delete and count every eligible entry exactly once."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest
from scheduling_app import START, Record, make_app

from scheduling import ManualClock, Retention, ScheduledCommandStatus
from scheduling.observer import SchedulingObserver
from stores import SqlStore

S = ScheduledCommandStatus
DAY = timedelta(days=1)
ELIGIBLE = 300


class PurgeCounts(SchedulingObserver):
    def __init__(self) -> None:
        self.total = 0

    def on_purged(self, status: ScheduledCommandStatus, count: int) -> None:
        self.total += count


async def test_two_services_purging_at_once_do_not_double_the_work(
    sql_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock(START)
    retention = Retention(completed=DAY, failed=DAY, batch_size=10, batch_pause=timedelta(0))
    observers = [PurgeCounts(), PurgeCounts()]
    async with SqlStore(sql_url) as first, SqlStore(sql_url) as second:
        apps = [
            make_app(store=store, clock=clock, observers=[observer], retention=retention, worker_id=f"w{n}")
            for n, (store, observer) in enumerate(zip((first, second), observers, strict=True))
        ]
        await apps[0].scheduler.schedule_many([Record(value=str(i)) for i in range(ELIGIBLE)])
        assert await apps[0].service.run_until_idle() == ELIGIBLE
        clock.advance(DAY - timedelta(seconds=1))
        recent = await apps[0].scheduler.schedule(Record(value="recent"))  # finishes a day later than the others
        assert await apps[0].service.run_until_idle() == 1
        clock.advance(DAY)
        with caplog.at_level(logging.WARNING, logger="scheduling"):
            async with apps[0].service, apps[1].service:  # both start a round at once
                async with asyncio.timeout(60):
                    while sum(o.total for o in observers) < ELIGIBLE:
                        await asyncio.sleep(0.01)
        assert sum(o.total for o in observers) == ELIGIBLE
        assert (await first.count_by_status())[S.COMPLETED] == 1
        assert (await second.get(recent)) is not None
        assert caplog.records == []
