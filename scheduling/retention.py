"""Retention: how long finished entries are kept, and the service's task that deletes them once they are older.

``Retention`` is a setting (``SchedulerSettings(retention=...)``); ``Purger`` is the background task a running
``ScheduledCommandService`` starts with it. Every ``interval`` the purger deletes, for each finished status that has
an age, the entries (and their attempts) whose ``completed_at`` is older than ``clock.now() - age``, through the
store's ``purge`` in batches of ``batch_size`` with a ``batch_pause`` between them, so one round never holds a
lock for long. Several workers may purge at once: every store deletes each entry in exactly one batch (PostgreSQL
locks the chosen rows with ``SKIP LOCKED``, SQLite holds its write lock, Redis runs one script), so the work is
split, never repeated. Recurring schedules are not touched; their finished occurrences are entries like any other.
The audit trail of operator actions is kept ``audit`` long (90 days by default) and trimmed in the same round.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stores.base import ScheduledCommandStore

from ._store_calls import run_guarded
from .clock import Clock
from .entries import ScheduledCommandStatus
from .observer import SchedulingObserver

__all__ = ["Purger", "Retention"]

logger = logging.getLogger("scheduling.service")

_AGES = ("completed", "failed", "cancelled", "expired")


class Retention(BaseModel):
    """How long the service keeps finished entries before deleting them, per finished status.

    An age of ``None`` keeps entries of that status until someone purges them (``cqrs-scheduling purge``). The
    defaults keep completed entries a week, cancelled and expired ones 30 days, and dead letters (FAILED) until an
    operator requeues or dismisses them: a dead letter is evidence of a failure nobody has looked at yet. A
    dismissed dead letter is CANCELLED, and goes after ``cancelled``.

    ``Retention.off()`` keeps everything; so does ``SchedulerSettings(retention=None)``.

    .. versionadded:: 0.5
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Keep COMPLETED entries this long after they finished.
    completed: timedelta | None = timedelta(days=7)
    #: Keep FAILED entries (dead letters) this long after they failed; ``None``: until requeued or dismissed.
    failed: timedelta | None = None
    #: Keep CANCELLED entries (dismissed dead letters included) this long after they were cancelled.
    cancelled: timedelta | None = timedelta(days=30)
    #: Keep EXPIRED entries this long after they expired.
    expired: timedelta | None = timedelta(days=30)
    #: Keep the audit trail's records of operator actions this long; ``None``: forever.
    audit: timedelta | None = timedelta(days=90)
    #: How often the service looks for entries to delete (measured on the service's clock); the first round runs
    #: when the service starts.
    interval: timedelta = timedelta(minutes=10)
    #: Entries deleted per store call (one short transaction, or one Redis script).
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 500
    #: Wall-clock pause between two batches of one round, leaving the database to the workers' own writes.
    batch_pause: timedelta = timedelta(milliseconds=50)

    @field_validator(*_AGES, "audit")
    @classmethod
    def _positive_age(cls, value: timedelta | None, info: object) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            name = getattr(info, "field_name", "age")
            raise ValueError(f"{name} must be a positive age or None (keep), got {value!r}")
        return value

    @field_validator("interval")
    @classmethod
    def _positive_interval(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError(f"interval must be positive, got {value!r}")
        return value

    @field_validator("batch_pause")
    @classmethod
    def _non_negative_pause(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError(f"batch_pause must not be negative, got {value!r}")
        return value

    @classmethod
    def off(cls) -> Retention:
        """A retention that deletes nothing (every age ``None``)."""
        return cls(completed=None, failed=None, cancelled=None, expired=None, audit=None)

    @property
    def ages(self) -> dict[ScheduledCommandStatus, timedelta]:
        """The age of every finished status that is purged, by status."""
        ages = {ScheduledCommandStatus[name.upper()]: getattr(self, name) for name in _AGES}
        return {status: age for status, age in ages.items() if age is not None}


class Purger:
    """Deletes finished entries older than the ``Retention`` ages, in batches; one round at a time.

    Args:
        store: where the entries are.
        retention: the ages and pacing.
        clock: what "now" is; an entry goes when ``completed_at < clock.now() - age``.
        observer: told each batch's count (``on_purged``), for the ``entries_purged_total`` counter.
        worker_id: this worker's name in the log records.

    A store call that fails ends the round (one log record, WARNING when the store is away) without retries:
    nothing is urgent about deleting old entries, and the next round, an ``interval`` later, carries on.
    """

    def __init__(
        self,
        store: ScheduledCommandStore,
        retention: Retention,
        clock: Clock,
        observer: SchedulingObserver,
        *,
        worker_id: str,
    ) -> None:
        self._store = store
        self._retention = retention
        self._clock = clock
        self._observer = observer
        self._worker_id = worker_id

    async def run(self) -> None:
        """Purge now and then every ``interval``, until cancelled; a failed round is logged and the next one runs."""
        while True:
            await run_guarded(self._purge_round)
            await self._clock.sleep_until(self._clock.now() + self._retention.interval)

    async def purge_once(self) -> dict[ScheduledCommandStatus, int]:
        """One round: delete what is old enough now; how many entries of each status this worker deleted.

        Logs one INFO record when it deleted anything (nothing when it did not).
        """
        purged: dict[ScheduledCommandStatus, int] = {}
        try:
            now = self._clock.now()
            for status, age in self._retention.ages.items():
                if now - datetime.min.replace(tzinfo=now.tzinfo) <= age:
                    continue  # the clock is within ``age`` of the year 1: nothing can have finished that long ago
                await self._purge_status(status, now - age, purged)
            await self._forget_audit_records(now)
        finally:
            if purged:
                counts = ", ".join(f"{count} {status.value.lower()}" for status, count in purged.items())
                logger.info(
                    "retention purged %d finished entries (%s)",
                    sum(purged.values()),
                    counts,
                    extra={"action": "purge", "worker_id": self._worker_id, "purged": _labels(purged)},
                )
        return purged

    async def _forget_audit_records(self, now: datetime) -> None:
        age = self._retention.audit
        if age is None or now - datetime.min.replace(tzinfo=now.tzinfo) <= age:
            return
        forgotten = await self._store.forget_audit_records(before=now - age)
        if forgotten:
            logger.info(
                "retention deleted %d audit records older than %s",
                forgotten,
                age,
                extra={"action": "purge", "worker_id": self._worker_id, "audit_records": forgotten},
            )

    async def _purge_round(self) -> None:
        await self.purge_once()

    async def _purge_status(
        self, status: ScheduledCommandStatus, older_than: datetime, purged: dict[ScheduledCommandStatus, int]
    ) -> None:
        batch = self._retention.batch_size
        pause = self._retention.batch_pause.total_seconds()
        while True:
            deleted = await self._store.purge(older_than=older_than, statuses=[status], limit=batch)
            if deleted:
                purged[status] = purged.get(status, 0) + deleted
                self._observer.on_purged(status, deleted)
            if deleted < batch:
                return
            await asyncio.sleep(pause)


def _labels(purged: dict[ScheduledCommandStatus, int]) -> dict[str, int]:
    return {status.value.lower(): count for status, count in purged.items()}
