"""Recurring schedules at the store level: declare, pause, resume, remove, and advance on a claimed occurrence.

Shared by ``CommandScheduler`` (which validates the command with the mediator first), the worker service and the
command line (which has no mediator: the stored schedule's type name and payload are all an occurrence needs).

Exactly one occurrence entry per schedule, generation and occurrence time exists, whoever creates it: its
idempotency key, ``recurring:{name}:{generation}:{occurrence time}``, is unique in every store.
"""

from __future__ import annotations

import logging
from datetime import datetime

from stores.base import ScheduledCommandStore
from stores.entries import ScheduledCommandEntry

from .recurring import RecurringSchedule, next_occurrence, occurrence_entry, occurrences_after

__all__ = ["advance", "declare", "pause", "remove", "resume"]

logger = logging.getLogger(__name__)


async def _add_next(
    store: ScheduledCommandStore, schedule: RecurringSchedule, now: datetime, default_max_retries: int
) -> datetime:
    """Add the first occurrence strictly after ``now`` (a no-op when it exists) and record it; return its time."""
    first = next(occurrences_after(schedule, now))
    await store.add([occurrence_entry(schedule, first, now, default_max_retries=default_max_retries)])
    await store.record_schedule_run(schedule.name, schedule.generation, last_run_at=None, next_run_at=first)
    return first


async def declare(
    store: ScheduledCommandStore, schedule: RecurringSchedule, now: datetime, *, default_max_retries: int
) -> tuple[RecurringSchedule, list[ScheduledCommandEntry]]:
    """Upsert a validated schedule; cancel pending occurrences of older generations; make sure the next occurrence
    exists (unless paused). Idempotent: declaring an unchanged schedule again stores nothing new.

    Returns the stored schedule and the occurrences cancelled.
    """
    stored = RecurringSchedule.from_stored(await store.upsert_schedule(schedule.to_stored()))
    cancelled = await store.cancel_occurrences(stored.name, now=now, keep_generation=stored.generation)
    if not stored.paused:
        first = await _add_next(store, stored, now, default_max_retries)
        stored = stored.model_copy(update={"next_run_at": first})
    return stored, cancelled


async def pause(
    store: ScheduledCommandStore, name: str, now: datetime
) -> tuple[RecurringSchedule | None, list[ScheduledCommandEntry]]:
    """Pause a schedule and cancel its pending occurrences. ``(None, [])`` if there is no such schedule."""
    current = await store.get_schedule(name)
    if current is None:
        return None, []
    if current.paused:
        return RecurringSchedule.from_stored(current), []
    paused = await store.set_schedule_paused(name, True, now=now)
    cancelled = await store.cancel_occurrences(name, now=now)
    return (RecurringSchedule.from_stored(paused) if paused is not None else None), cancelled


async def resume(
    store: ScheduledCommandStore, name: str, now: datetime, *, default_max_retries: int
) -> RecurringSchedule | None:
    """Resume a paused schedule at its next future occurrence (missed ones are not run). ``None`` if unknown."""
    current = await store.get_schedule(name)
    if current is None:
        return None
    if not current.paused:
        return RecurringSchedule.from_stored(current)
    resumed = await store.set_schedule_paused(name, False, now=now)
    if resumed is None:
        return None
    schedule = RecurringSchedule.from_stored(resumed)
    await store.cancel_occurrences(name, now=now, keep_generation=schedule.generation)
    first = await _add_next(store, schedule, now, default_max_retries)
    return schedule.model_copy(update={"next_run_at": first})


async def remove(store: ScheduledCommandStore, name: str, now: datetime) -> tuple[bool, list[ScheduledCommandEntry]]:
    """Delete a schedule and cancel its pending occurrences; whether it existed, and the occurrences cancelled."""
    existed = await store.delete_schedule(name)
    cancelled = await store.cancel_occurrences(name, now=now)
    return existed, cancelled


async def advance(
    store: ScheduledCommandStore, entry: ScheduledCommandEntry, now: datetime, *, default_max_retries: int
) -> ScheduledCommandEntry | None:
    """A worker claimed an occurrence: create the schedule's next one, by misfire policy; return it (or ``None``).

    Nothing happens if the schedule is gone, paused, or of another generation than the occurrence. Safe to call
    again, from any worker: the next occurrence's unique key makes a second creation a no-op. If the schedule
    changed while the next occurrence was being added, the occurrence this call added is cancelled again.
    """
    name = entry.recurring_name
    if name is None:
        return None
    generation = entry.occurrence_generation
    stored = await store.get_schedule(name)
    if stored is None or stored.paused or generation is None or stored.generation != generation:
        return None
    schedule = RecurringSchedule.from_stored(stored)
    occurrence_at = entry.occurrence_at or entry.scheduled_for
    following = next_occurrence(schedule, occurrence_at, now)
    new = occurrence_entry(schedule, following, now, default_max_retries=default_max_retries)
    (held_by,) = await store.add([new])
    first_claim = entry.attempt_count == 0 and entry.retry_count == 0
    await store.record_schedule_run(
        name, generation, last_run_at=occurrence_at if first_claim else None, next_run_at=following
    )
    if held_by != new.id:
        return None  # another worker (or an earlier claim of this occurrence) created it
    current = await store.get_schedule(name)
    if current is None or current.paused or current.generation != generation:
        await store.cancel(new.id, now=now)  # paused, removed or redefined meanwhile: the new owner decides
        return None
    logger.debug(
        "recurring %s: next occurrence %s",
        name,
        following.isoformat(),
        extra={"action": "recurring_next", "command_id": new.id, "command_type": new.command_type},
    )
    return new
