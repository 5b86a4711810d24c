"""``SchedulingModule``: binds the store, settings, clock, scheduler and service into an ``Injector``."""

from __future__ import annotations

from collections.abc import Iterable

from injector import Binder, CallableProvider, Module, singleton

from stores.base import ScheduledCommandStore
from stores.default import default_store

from ._hooks import StartupHook, StartupHooks
from .clock import Clock, SystemClock
from .context import CommandContext, current_or_raise
from .observer import SchedulingObserver, SchedulingObservers
from .options import SchedulerSettings
from .scheduler import CommandScheduler
from .service import ScheduledCommandService

__all__ = ["SchedulingModule"]


class SchedulingModule(Module):
    """Install next to one or more ``MediatorModule``: ``Injector([MediatorModule(...), SchedulingModule(...)])``.

    Args:
        store: where scheduled commands live. Default: a ``SqlStore`` on ``$CQRS_SCHEDULING_STORE``, else on
            ``sqlite:///scheduled-commands.db``, the very store the ``cqrs-scheduling`` command line uses, so a
            producer and a worker built from the same factory share it. Pass ``MemoryStore()`` for tests and
            single-process scripts (its entries are lost on exit).
        settings: service settings; default ``SchedulerSettings()``.
        clock: default ``SystemClock()``; tests pass a ``ManualClock``.
        observers: ``SchedulingObserver``s called on every scheduled, started, finished and cancelled entry
            (metrics: ``scheduling.metrics.PrometheusObserver``).
        on_start: ``async def hook(scheduler) -> None`` callables run when the service starts, before its first
            claim: the place to declare recurring schedules (``scheduler.schedule_recurring(...)``), so a
            ``cqrs-scheduling worker --app`` process declares them itself. A hook that raises stops the start.

    Binds ``CommandContext`` too: a handler whose constructor takes ``context: CommandContext`` (``@inject``) gets
    the context of the scheduled run it is built for (``NoCommandContextError`` outside one).

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
       Without ``store``, the default is the same durable store as the command line's, no longer a ``MemoryStore``;
       ``on_start`` added; ``CommandContext`` bound.
    """

    def __init__(
        self,
        store: ScheduledCommandStore | None = None,
        settings: SchedulerSettings | None = None,
        clock: Clock | None = None,
        observers: Iterable[SchedulingObserver] = (),
        on_start: Iterable[StartupHook] = (),
    ) -> None:
        self.store: ScheduledCommandStore = store if store is not None else default_store()
        self.settings = settings if settings is not None else SchedulerSettings()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.observers = SchedulingObservers(observers)
        self.on_start = StartupHooks(on_start)

    def configure(self, binder: Binder) -> None:
        binder.bind(ScheduledCommandStore, to=self.store)  # type: ignore[type-abstract]
        binder.bind(SchedulerSettings, to=self.settings)
        binder.bind(Clock, to=self.clock)  # type: ignore[type-abstract]
        binder.bind(SchedulingObservers, to=self.observers)
        binder.bind(StartupHooks, to=self.on_start)
        binder.bind(CommandScheduler, to=CommandScheduler, scope=singleton)
        binder.bind(ScheduledCommandService, to=ScheduledCommandService, scope=singleton)
        # Resolved at each injection, so a handler built for a scheduled run gets that run's context.
        binder.bind(CommandContext, to=CallableProvider(current_or_raise))
