"""``SchedulingObserver``: cheap synchronous hooks on the life of scheduled commands, for metrics and tracing.

Lifecycle notifications go through the mediator and are for application logic; observers are for instruments
that must see every event at almost no cost (Prometheus counters, histograms). Install them with
``SchedulingModule(observers=[...])``. Every hook runs on the event loop, so it must not block; an observer that
raises is logged and never changes an outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Literal

from .entries import ScheduledCommandEntry, ScheduledCommandStatus

__all__ = ["FinishedOutcome", "SchedulingObserver", "SchedulingObservers"]

logger = logging.getLogger(__name__)

#: How a claimed entry left the worker: ran (completed), failed and will run again (retrying), dead-lettered
#: (failed), or was too late to start (expired).
FinishedOutcome = Literal["completed", "retrying", "failed", "expired"]


class SchedulingObserver:
    """Override the hooks you need; the defaults do nothing.

    .. versionadded:: 0.3
    """

    def on_service_started(self, command_types: Sequence[str]) -> None:
        """A service starts handling commands (``run``, ``start`` or ``run_until_idle``); ``command_types`` are the
        command types (``module.Name``) it has handlers for, so an observer can prepare per-type instruments.

        .. versionadded:: 0.4
        """

    def on_scheduled(self, entries: Sequence[ScheduledCommandEntry]) -> None:
        """Entries were stored by ``schedule``/``schedule_many`` (in a caller's session: before it commits)."""

    def on_started(self, entry: ScheduledCommandEntry, started_at: datetime) -> None:
        """A worker starts an attempt; ``started_at - entry.scheduled_for`` is the due-to-start lag."""

    def on_finished(
        self, entry: ScheduledCommandEntry, outcome: FinishedOutcome, started_at: datetime, finished_at: datetime
    ) -> None:
        """An attempt's outcome is recorded in the store (only when this worker still held the lease)."""

    def on_cancelled(self, entries: Sequence[ScheduledCommandEntry]) -> None:
        """Pending entries were cancelled through the scheduler."""

    def on_purged(self, status: ScheduledCommandStatus, count: int) -> None:
        """The service's retention deleted ``count`` finished entries of ``status`` (one batch; never 0).

        .. versionadded:: 0.5
        """


class SchedulingObservers(SchedulingObserver):
    """Every installed observer as one; what the scheduler and the service call. Empty: a few attribute reads."""

    def __init__(self, observers: Iterable[SchedulingObserver] = ()) -> None:
        self._observers = tuple(observers)

    def __bool__(self) -> bool:
        return bool(self._observers)

    def add(self, observer: SchedulingObserver) -> None:
        """Install one more observer after the injector is built (the worker's ``--metrics-port`` does).

        The scheduler and the service hold this very instance, so they call it from their next event on.

        .. versionadded:: 0.3
        """
        if not isinstance(observer, SchedulingObserver):
            given = f"the class {observer.__qualname__}" if isinstance(observer, type) else type(observer).__qualname__
            raise TypeError(f"observers must be SchedulingObserver instances, got {given}")
        self._observers = (*self._observers, observer)

    def on_service_started(self, command_types: Sequence[str]) -> None:
        self._each("on_service_started", command_types)

    def on_scheduled(self, entries: Sequence[ScheduledCommandEntry]) -> None:
        self._each("on_scheduled", entries)

    def on_started(self, entry: ScheduledCommandEntry, started_at: datetime) -> None:
        self._each("on_started", entry, started_at)

    def on_finished(
        self, entry: ScheduledCommandEntry, outcome: FinishedOutcome, started_at: datetime, finished_at: datetime
    ) -> None:
        self._each("on_finished", entry, outcome, started_at, finished_at)

    def on_cancelled(self, entries: Sequence[ScheduledCommandEntry]) -> None:
        self._each("on_cancelled", entries)

    def on_purged(self, status: ScheduledCommandStatus, count: int) -> None:
        self._each("on_purged", status, count)

    def _each(self, hook: str, *args: object) -> None:
        for observer in self._observers:
            try:
                getattr(observer, hook)(*args)
            except Exception:
                logger.exception(
                    "observer %s failed in %s", type(observer).__qualname__, hook, extra={"action": "observe"}
                )
