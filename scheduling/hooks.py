"""Start-up hooks: the application's code that runs when its service starts, such as declaring recurring schedules.

Installed with ``SchedulingModule(on_start=...)``. A worker process (``cqrs-scheduling worker --app ...``) builds the
application from its factory and starts the service, so a hook is where such a worker declares its recurring
schedules: every worker declares them at every start, and declaring an unchanged schedule again changes nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .scheduler import CommandScheduler

__all__ = ["StartupHook", "StartupHooks"]

#: ``async def hook(scheduler: CommandScheduler) -> None``: called when the service starts, before its first claim.
StartupHook = Callable[["CommandScheduler"], Awaitable[None]]


class StartupHooks:
    """The installed start-up hooks, in installation order; what the service calls."""

    def __init__(self, hooks: Iterable[StartupHook] = ()) -> None:
        self._hooks = tuple(hooks)
        for hook in self._hooks:
            if not callable(hook):
                raise TypeError(f"on_start hooks must be callables taking the CommandScheduler, got {hook!r}")
            if inspect.isfunction(hook) and not inspect.iscoroutinefunction(hook):
                raise TypeError(_not_async(hook))

    def __bool__(self) -> bool:
        return bool(self._hooks)

    async def run(self, scheduler: CommandScheduler) -> None:
        """Call every hook in order; the first that raises stops the start-up (its error propagates)."""
        for hook in self._hooks:
            started = hook(scheduler)
            if not inspect.isawaitable(started):  # a callable object or a partial whose function is not async
                raise TypeError(_not_async(hook))
            await started


def _not_async(hook: object) -> str:
    target = getattr(hook, "func", hook)  # functools.partial: name the function it wraps
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"on_start hook {name} is not async: define it with 'async def', taking the CommandScheduler"
