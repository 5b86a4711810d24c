"""``run_until_idle()`` and attempts that end while a claim is in flight (MemoryStore, ManualClock).

A claim reads the store at one moment and answers later (a PostgreSQL claim statement reads one snapshot; under load
its answer can come after the attempts running at that moment have ended). An attempt that ended meanwhile may have
freed its lock or created the next occurrence of its schedule, which that claim did not see: finding nothing then
does not mean that nothing is left to run.
"""

from __future__ import annotations

import asyncio
from typing import Any

import recurring_scenarios as scenarios
from scheduling_app import Record, make_app

from scheduling import ScheduledCommandStatus, ScheduleOptions
from scheduling.entries import ScheduledCommandEntry
from scheduling.service import ScheduledCommandService
from stores import MemoryStore


class LateAnsweringStore(MemoryStore):
    """A real MemoryStore whose claims that begin while attempts run answer only after those attempts have ended,
    as a claim slowed by load does when its read came before their outcomes were written."""

    def __init__(self) -> None:
        super().__init__()
        self.service: ScheduledCommandService | None = None
        self.late_answers = 0

    async def claim_due(self, **kwargs: Any) -> list[ScheduledCommandEntry]:
        service = self.service
        began_while_running = service is not None and service.running > 0
        entries = await super().claim_due(**kwargs)
        if began_while_running and service is not None:
            self.late_answers += 1
            async with asyncio.timeout(5):  # bounded: the attempts here end without waiting for anything
                while service.running:
                    await asyncio.sleep(0)
        return entries


async def test_entries_of_one_lock_all_run_when_each_claim_answers_after_the_holder_ended() -> None:
    store = LateAnsweringStore()
    app = make_app(store=store)
    store.service = app.service
    ids = [await app.scheduler.schedule(Record(value=str(n)), ScheduleOptions(lock="L")) for n in range(3)]
    assert await app.service.run_until_idle() == 3
    assert app.log.records == ["0", "1", "2"]
    for command_id in ids:
        entry = await app.scheduler.get_status(command_id)
        assert entry is not None and entry.status is ScheduledCommandStatus.COMPLETED
    assert store.late_answers >= 2  # the claims after the first two starts did answer late


async def test_every_missed_occurrence_runs_when_claims_answer_late() -> None:
    """The recurring misfire scenario (occurrences share the schedule's lock, each creates the next) with every
    claim answering late: all 13 occurrences of ``run_all`` run."""
    store = LateAnsweringStore()
    app = make_app(store=store)
    store.service = app.service
    await scenarios.downtime(app, "run_all")
    assert store.late_answers > 0
