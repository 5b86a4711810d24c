"""The recurring schedules as operators see them (part of ``scheduling.admin``, which re-exports every name): the
list, pause, resume and remove, shared by the command line and the dashboard."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, field_serializer

from stores.base import ScheduledCommandStore
from stores.schedules import MisfirePolicy, StoredSchedule

from . import recurring_ops
from .options import ScheduleOptions, SchedulerSettings
from .recurring import RecurringSchedule

__all__ = [
    "PauseResult",
    "RecurringList",
    "RecurringScheduleView",
    "RemoveResult",
    "ResumeResult",
    "pause_schedule",
    "recurring_list",
    "remove_schedule",
    "resume_schedule",
]


class RecurringScheduleView(BaseModel):
    """A recurring schedule as operators see it: ``RecurringSchedule``'s fields, the interval in seconds.

    ``error`` is None for a valid schedule. A stored schedule that no longer loads (a time zone this system does not
    know, options that do not validate) is still shown, as stored, with ``error`` saying why (its options as the
    defaults when they are the problem): the worker cannot run it, and the operator must see it to fix or remove it.
    """

    name: str
    command_type: str
    #: The command as JSON.
    payload: str
    cron: str | None
    #: The interval in seconds, or None for a cron schedule.
    interval: float | None
    timezone: str
    options: ScheduleOptions
    misfire_policy: MisfirePolicy
    paused: bool
    generation: int
    next_run_at: datetime | None
    last_run_at: datetime | None
    created_at: datetime
    updated_at: datetime
    #: Why the stored schedule does not load (it cannot run), or None.
    error: str | None = None

    @classmethod
    def of(cls, schedule: RecurringSchedule) -> RecurringScheduleView:
        interval = schedule.interval.total_seconds() if schedule.interval is not None else None
        return cls.model_validate({**dict(schedule), "interval": interval})

    @classmethod
    def of_stored(cls, stored: StoredSchedule) -> RecurringScheduleView:
        """The view of a stored schedule: validated, or as stored with ``error`` set when it does not load."""
        try:
            return cls.of(RecurringSchedule.from_stored(stored))
        except ValueError as exc:
            error = str(exc)
        try:
            options = ScheduleOptions.model_validate_json(stored.options_json)
        except ValueError:
            options = ScheduleOptions()
        values = stored.model_dump(exclude={"options_json"})
        interval = stored.interval.total_seconds() if stored.interval is not None else None
        return cls.model_validate({**values, "interval": interval, "options": options, "error": error})


class RecurringList(BaseModel):
    """``recurring list``: every schedule, by name."""

    schedules: list[RecurringScheduleView]


class PauseResult(BaseModel):
    """``recurring pause``: the schedule is paused; its pending occurrences cancelled."""

    name: str
    paused: bool
    cancelled: list[str]


class ResumeResult(BaseModel):
    """``recurring resume``: the schedule runs again from its next future occurrence."""

    name: str
    paused: bool
    #: The next occurrence (ISO 8601, as ``datetime.isoformat()`` writes it), or None.
    next_run_at: datetime | None

    @field_serializer("next_run_at")
    def _iso(self, value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None


class RemoveResult(BaseModel):
    """``recurring remove``: the schedule is deleted; its pending occurrences cancelled."""

    name: str
    removed: bool
    cancelled: list[str]


async def recurring_list(store: ScheduledCommandStore) -> RecurringList:
    """Every schedule, by name; one that does not load is listed with its ``error`` (see ``RecurringScheduleView``)."""
    return RecurringList(schedules=[RecurringScheduleView.of_stored(s) for s in await store.list_schedules()])


async def pause_schedule(store: ScheduledCommandStore, name: str, now: datetime) -> PauseResult | None:
    """Pause the schedule ``name``; None if there is none of that name."""
    paused, cancelled = await recurring_ops.pause(store, name, now)
    if paused is None:
        return None
    return PauseResult(name=name, paused=True, cancelled=[e.id for e in cancelled])


async def resume_schedule(
    store: ScheduledCommandStore, name: str, now: datetime, *, default_max_retries: int | None = None
) -> ResumeResult | None:
    """Resume the schedule ``name`` at its next future occurrence; None if there is none of that name.

    ``default_max_retries`` (for occurrences whose options leave it unset) defaults to ``SchedulerSettings``'.
    """
    if default_max_retries is None:
        default_max_retries = SchedulerSettings.model_fields["max_retries"].default
    resumed = await recurring_ops.resume(store, name, now, default_max_retries=default_max_retries)
    if resumed is None:
        return None
    return ResumeResult(name=name, paused=False, next_run_at=resumed.next_run_at)


async def remove_schedule(store: ScheduledCommandStore, name: str, now: datetime) -> RemoveResult | None:
    """Delete the schedule ``name``, cancelling its pending occurrences; None if there is none of that name."""
    existed, cancelled = await recurring_ops.remove(store, name, now)
    if not existed:
        return None
    return RemoveResult(name=name, removed=True, cancelled=[e.id for e in cancelled])
