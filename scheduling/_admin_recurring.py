"""The recurring schedules as operators see them (part of ``scheduling.admin``, which re-exports every name): the
list (with each schedule's last outcome), its recent occurrences, run now, pause, resume and remove, shared by the
command line and the dashboard."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, field_serializer

from stores.base import ScheduledCommandStore
from stores.entries import TERMINAL_STATUSES, ScheduledCommandEntry
from stores.schedules import MisfirePolicy, StoredSchedule

from . import recurring_ops
from .options import ScheduleOptions, SchedulerSettings
from .recurring import RecurringSchedule, occurrence_entry

__all__ = [
    "OCCURRENCES_SHOWN",
    "PauseResult",
    "RecurringList",
    "RecurringScheduleView",
    "RemoveResult",
    "ResumeResult",
    "RunNowResult",
    "ScheduleOccurrences",
    "pause_schedule",
    "recurring_list",
    "remove_schedule",
    "resume_schedule",
    "run_schedule_now",
    "schedule_occurrences",
]

#: How many of a schedule's latest occurrences its page and ``recurring occurrences`` show by default.
OCCURRENCES_SHOWN = 20


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
    #: The status its latest finished occurrence ended in (COMPLETED, FAILED, EXPIRED, CANCELLED), and when; None
    #: when no recent occurrence has finished.
    last_outcome: str | None = None
    last_finished_at: datetime | None = None

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


class ScheduleOccurrences(BaseModel):
    """``recurring occurrences``: a schedule and its latest occurrences (entries), newest first, every status."""

    schedule: RecurringScheduleView
    occurrences: list[ScheduledCommandEntry]


class RunNowResult(BaseModel):
    """``recurring run-now``: one occurrence of the schedule, due now, for any worker of the fleet to run.

    The regular occurrences are left as they are. Asking twice within the same second adds one occurrence
    (``created`` is False the second time, and ``id`` is the first one's).
    """

    name: str
    id: str
    scheduled_for: datetime
    created: bool


def _with_last_outcome(view: RecurringScheduleView, occurrences: list[ScheduledCommandEntry]) -> RecurringScheduleView:
    finished = next((e for e in occurrences if e.status in TERMINAL_STATUSES), None)
    if finished is None:
        return view
    return view.model_copy(update={"last_outcome": finished.status.value, "last_finished_at": finished.completed_at})


async def recurring_list(store: ScheduledCommandStore) -> RecurringList:
    """Every schedule, by name, with its last outcome; one that does not load is listed with its ``error`` (see
    ``RecurringScheduleView``)."""
    views = []
    for stored in await store.list_schedules():
        recent = await store.list_occurrences(stored.name, limit=5)
        views.append(_with_last_outcome(RecurringScheduleView.of_stored(stored), recent))
    return RecurringList(schedules=views)


async def schedule_occurrences(
    store: ScheduledCommandStore, name: str, *, limit: int = OCCURRENCES_SHOWN
) -> ScheduleOccurrences | None:
    """The schedule ``name`` and its latest ``limit`` occurrences; None if there is no schedule of that name."""
    stored = await store.get_schedule(name)
    if stored is None:
        return None
    occurrences = await store.list_occurrences(name, limit=limit)
    view = _with_last_outcome(RecurringScheduleView.of_stored(stored), occurrences)
    return ScheduleOccurrences(schedule=view, occurrences=occurrences)


async def run_schedule_now(
    store: ScheduledCommandStore, name: str, now: datetime, *, default_max_retries: int | None = None
) -> RunNowResult | None:
    """Add one occurrence of the schedule ``name`` due ``now``: whichever worker claims it runs it, once, like any
    occurrence (it counts as the schedule's last run; the next regular occurrence stays as it is). A paused
    schedule's occurrence runs too. None if there is no schedule of that name.

    Raises:
        ValueError: the stored schedule does not load (its ``error``), so it cannot run.
    """
    stored = await store.get_schedule(name)
    if stored is None:
        return None
    schedule = RecurringSchedule.from_stored(stored)
    if default_max_retries is None:
        default_max_retries = SchedulerSettings.model_fields["max_retries"].default
    entry = occurrence_entry(schedule, now, now, default_max_retries=default_max_retries)
    # Its own key, by the second it was asked: a double click or two operators at once add one occurrence, and it
    # never takes the key of the regular occurrence that may be due at the same time.
    key = f"recurring:{name}:{schedule.generation}:run-now:{now.replace(microsecond=0).isoformat()}"
    entry = entry.model_copy(update={"idempotency_key": key})
    (held_by,) = await store.add([entry])
    return RunNowResult(name=name, id=held_by, scheduled_for=now, created=held_by == entry.id)


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
