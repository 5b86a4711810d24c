"""The recurring-schedule part of the store contract, a base of ``ScheduledCommandStore``: the stored definitions of
recurring schedules and their bookkeeping (the rules are in ``scheduling``; see ``docs/recurring.md``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime

from .entries import ScheduledCommandEntry
from .schedules import StoredSchedule

__all__ = ["ScheduleStore"]


class ScheduleStore(ABC):
    """The recurring-schedule methods every store implements."""

    @abstractmethod
    async def upsert_schedule(self, schedule: StoredSchedule) -> StoredSchedule:
        """Insert the schedule, or update the stored one of that name, atomically; return what is stored.

        An unknown name is stored as given. When the stored definition (``StoredSchedule.definition()``) equals
        the given one, nothing changes and the stored schedule is returned (same generation). Otherwise the
        definition and ``updated_at`` are replaced and the generation becomes the stored one plus 1; ``paused``,
        ``created_at`` and the bookkeeping times are kept.
        """

    @abstractmethod
    async def get_schedule(self, name: str) -> StoredSchedule | None:
        """The schedule of that name, or ``None``."""

    @abstractmethod
    async def list_schedules(self) -> list[StoredSchedule]:
        """Every schedule, by name."""

    @abstractmethod
    async def delete_schedule(self, name: str) -> bool:
        """Delete the schedule (not its occurrences); True if it existed."""

    @abstractmethod
    async def set_schedule_paused(self, name: str, paused: bool, *, now: datetime) -> StoredSchedule | None:
        """Set ``paused``, bump the generation and ``updated_at = now`` atomically (pausing also clears
        ``next_run_at``); the updated schedule, or ``None`` if there is none of that name."""

    @abstractmethod
    async def record_schedule_run(
        self, name: str, generation: int, *, last_run_at: datetime | None, next_run_at: datetime | None
    ) -> bool:
        """Bookkeeping: set ``next_run_at`` (and ``last_run_at`` when given) if the schedule is still at
        ``generation``; False (nothing changed) otherwise."""

    @abstractmethod
    async def cancel_occurrences(
        self, name: str, *, now: datetime, keep_generation: int | None = None
    ) -> list[ScheduledCommandEntry]:
        """Cancel the PENDING occurrences of schedule ``name`` atomically (``completed_at = now``), except those of
        those whose ``occurrence_generation`` is ``keep_generation`` when given. Returns the cancelled entries."""
