"""``SchedulingModule``: binds the store, settings, clock, scheduler and service into an ``Injector``."""

from __future__ import annotations

from collections.abc import Iterable

from injector import Binder, Module, singleton

from stores.base import ScheduledCommandStore
from stores.memory import MemoryStore

from .clock import Clock, SystemClock
from .observer import SchedulingObserver, SchedulingObservers
from .options import SchedulerSettings
from .scheduler import CommandScheduler
from .service import ScheduledCommandService

__all__ = ["SchedulingModule"]


class SchedulingModule(Module):
    """Install next to one or more ``MediatorModule``: ``Injector([MediatorModule(...), SchedulingModule(...)])``.

    Args:
        store: where scheduled commands live; default a new ``MemoryStore`` (use ``SqlStore`` to survive restarts).
        settings: service settings; default ``SchedulerSettings()``.
        clock: default ``SystemClock()``; tests pass a ``ManualClock``.
        observers: ``SchedulingObserver``s called on every scheduled, started, finished and cancelled entry
            (metrics: ``scheduling.metrics.PrometheusObserver``).

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        store: ScheduledCommandStore | None = None,
        settings: SchedulerSettings | None = None,
        clock: Clock | None = None,
        observers: Iterable[SchedulingObserver] = (),
    ) -> None:
        self.store: ScheduledCommandStore = store if store is not None else MemoryStore()
        self.settings = settings if settings is not None else SchedulerSettings()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.observers = SchedulingObservers(observers)

    def configure(self, binder: Binder) -> None:
        binder.bind(ScheduledCommandStore, to=self.store)  # type: ignore[type-abstract]
        binder.bind(SchedulerSettings, to=self.settings)
        binder.bind(Clock, to=self.clock)  # type: ignore[type-abstract]
        binder.bind(SchedulingObservers, to=self.observers)
        binder.bind(CommandScheduler, to=CommandScheduler, scope=singleton)
        binder.bind(ScheduledCommandService, to=ScheduledCommandService, scope=singleton)
