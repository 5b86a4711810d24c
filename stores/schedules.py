"""What the store holds for a recurring schedule: ``StoredSchedule``, a decision-free record.

The public model, ``scheduling.recurring.RecurringSchedule``, carries typed ``ScheduleOptions``; stores must not
depend on the ``scheduling`` package, so they persist this record, whose options are JSON text.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

__all__ = ["MisfirePolicy", "StoredSchedule"]

#: What a schedule does about occurrences missed while no worker ran (see docs/recurring.md).
MisfirePolicy = Literal["skip", "run_once", "run_all"]


class StoredSchedule(BaseModel):
    """One recurring schedule as a store keeps it. All datetimes are UTC-aware.

    .. versionadded:: 0.2
    """

    model_config = ConfigDict(frozen=True)

    #: Unique name: declaring the same name again updates the schedule.
    name: str
    command_type: str
    #: The command as JSON.
    payload: str
    #: A cron expression, or ``None`` for an interval schedule.
    cron: str | None = None
    #: The interval, or ``None`` for a cron schedule.
    interval: timedelta | None = None
    #: IANA time zone the cron expression is read in.
    timezone: str = "UTC"
    #: The per-occurrence ``ScheduleOptions`` as JSON.
    options_json: str = "{}"
    misfire_policy: MisfirePolicy = "skip"
    paused: bool = False
    #: Bumped whenever the definition changes or the schedule is paused or resumed; occurrences of an older
    #: generation never create further occurrences.
    generation: int = 1
    #: The next occurrence created (bookkeeping for display).
    next_run_at: AwareDatetime | None = None
    #: The nominal time of the latest occurrence claimed (bookkeeping for display).
    last_run_at: AwareDatetime | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime

    def definition(self) -> tuple[Any, ...]:
        """What decides whether a declaration changes the schedule (its fingerprint)."""
        return (
            self.command_type,
            self.payload,
            self.cron,
            self.interval,
            self.timezone,
            self.options_json,
            self.misfire_policy,
        )
