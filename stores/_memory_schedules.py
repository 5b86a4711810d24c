"""The recurring-schedule methods of ``MemoryStore`` (a mixin): one ``StoredSchedule`` per name, in a dict; the
rules of an upsert and of pausing are ``stores/_transitions.py``'s.

Every method runs without awaiting, so each is atomic among asyncio tasks on one loop. The occurrences are entries:
``MemoryStore`` cancels them (``cancel_occurrences``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ._transitions import redefined_schedule, schedule_paused_changes
from .schedules import StoredSchedule

__all__ = ["MemorySchedules"]


class MemorySchedules:
    def __init__(self) -> None:
        super().__init__()
        self._schedules: dict[str, StoredSchedule] = {}

    async def upsert_schedule(self, schedule: StoredSchedule) -> StoredSchedule:
        stored = self._schedules.get(schedule.name)
        if stored is None:
            self._schedules[schedule.name] = schedule
            return schedule
        if stored.definition() == schedule.definition():
            return stored
        updated = self._schedules[schedule.name] = redefined_schedule(stored, schedule)
        return updated

    async def get_schedule(self, name: str) -> StoredSchedule | None:
        return self._schedules.get(name)

    async def list_schedules(self) -> list[StoredSchedule]:
        return [self._schedules[name] for name in sorted(self._schedules)]

    async def delete_schedule(self, name: str) -> bool:
        return self._schedules.pop(name, None) is not None

    async def set_schedule_paused(self, name: str, paused: bool, *, now: datetime) -> StoredSchedule | None:
        stored = self._schedules.get(name)
        if stored is None:
            return None
        changes = schedule_paused_changes(paused, now=now, next_generation=stored.generation + 1)
        updated = self._schedules[name] = stored.model_copy(update=changes)
        return updated

    async def record_schedule_run(
        self, name: str, generation: int, *, last_run_at: datetime | None, next_run_at: datetime | None
    ) -> bool:
        stored = self._schedules.get(name)
        if stored is None or stored.generation != generation:
            return False
        changes: dict[str, Any] = {"next_run_at": next_run_at}
        if last_run_at is not None:
            changes["last_run_at"] = last_run_at
        self._schedules[name] = stored.model_copy(update=changes)
        return True
