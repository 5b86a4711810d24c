"""``CommandContext``: which scheduled run a handler is part of (command id, attempt number, correlation id, ...).

The service sets it, in a context variable, around each attempt's ``send()``; the handler reads it with
``CommandContext.current()`` or has it injected (``SchedulingModule`` binds ``CommandContext`` to a provider that
returns the current one). A plain ``def`` handler sees it too: the mediator runs the thread in a copy of the
attempt's context. Outside a scheduled run (a direct ``mediator.send()``, a notification handler, a script),
``current()`` is ``None`` and injecting ``CommandContext`` raises :class:`NoCommandContextError`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from .entries import ScheduledCommandEntry
from .errors import SchedulingError

__all__ = ["CommandContext", "NoCommandContextError"]

_EMPTY: Mapping[str, str] = MappingProxyType({})

_current: ContextVar[CommandContext | None] = ContextVar("cqrs_scheduling_command_context", default=None)
#: Guards the first creation of a context's cancel event (the event loop's thread and a ``def`` handler's may race).
_event_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class CommandContext:
    """The scheduled run a handler is part of: use ``command_id`` and ``attempt`` to build idempotency keys
    towards external systems, ``correlation_id`` and ``metadata`` to carry the caller's context.

    A frozen snapshot taken when the attempt starts. ``CommandContext.current()`` returns it inside a handler run by
    the service (``async def`` or plain ``def``) and ``None`` anywhere else.

    .. versionadded:: 0.2
    """

    #: The entry's id, as ``schedule()`` returned it; the same on every attempt.
    command_id: str
    #: The command's registered type name.
    command_type: str
    #: This attempt's number, 1-based, as in ``AttemptRecord.attempt`` (a requeued entry keeps counting).
    attempt: int
    correlation_id: str | None
    #: The entry's metadata, read-only (empty when it has none).
    metadata: Mapping[str, str]
    #: The queue the entry was scheduled on.
    queue: str
    #: When this attempt was due (a retry's due time after backoff; UTC).
    scheduled_for: datetime
    #: Created on first use: a ``threading.Event`` costs tens of microseconds (its ``Condition``), more than the rest
    #: of the context, and almost no attempt is ever asked to cancel.
    _cancel: threading.Event | None = field(default=None, compare=False, repr=False)

    @property
    def cancel_requested(self) -> bool:
        """Whether an operator cancelled this running attempt (``cancel(id, running=True)``). An ``async def``
        handler is cancelled (``CancelledError``) as well; a plain ``def`` handler, which cannot be interrupted,
        should check this (or ``wait_for_cancel``) and return soon: its entry's slot is held until it does.

        .. versionadded:: 0.6
        """
        event = self._cancel
        return event is not None and event.is_set()

    def wait_for_cancel(self, timeout: float | None = None) -> bool:
        """Block (a plain ``def`` handler's thread) until a cancel request arrives or ``timeout`` seconds pass;
        whether one arrived. Use it in place of ``time.sleep`` in a handler that waits.

        .. versionadded:: 0.6
        """
        return self._cancel_event().wait(timeout)

    def _request_cancel(self) -> None:
        self._cancel_event().set()

    def _cancel_event(self) -> threading.Event:
        event = self._cancel
        if event is None:
            with _event_lock:
                event = self._cancel
                if event is None:
                    event = threading.Event()
                    object.__setattr__(self, "_cancel", event)  # frozen: set once, under the lock
        return event

    @staticmethod
    def current() -> CommandContext | None:
        """The context of the scheduled run executing now, or ``None`` outside a scheduled run."""
        return _current.get()

    @classmethod
    def of(cls, entry: ScheduledCommandEntry) -> CommandContext:
        """The context of the attempt about to run on a claimed entry."""
        metadata = entry.metadata
        return cls(
            command_id=entry.id,
            command_type=entry.command_type,
            attempt=entry.attempt_count + 1,
            correlation_id=entry.correlation_id,
            metadata=MappingProxyType(dict(metadata)) if metadata else _EMPTY,
            queue=getattr(entry, "queue", None) or "default",
            scheduled_for=entry.scheduled_for,
        )


class NoCommandContextError(SchedulingError, LookupError):
    """``CommandContext`` was injected outside a scheduled run (a direct ``mediator.send()``, a script).

    A handler that also runs outside the service should call ``CommandContext.current()`` and handle ``None``.
    """

    def __str__(self) -> str:
        return (
            "CommandContext is only available inside a handler run by the scheduling service; outside a scheduled "
            "run call CommandContext.current(), which returns None"
        )


def current_or_raise() -> CommandContext:
    """The provider ``SchedulingModule`` binds ``CommandContext`` to.

    Raises:
        NoCommandContextError: outside a scheduled run.
    """
    context = _current.get()
    if context is None:
        raise NoCommandContextError
    return context


def enter(context: CommandContext) -> Token[CommandContext | None]:
    """Make ``context`` current (the service, around one attempt's ``send()``)."""
    return _current.set(context)


def leave(token: Token[CommandContext | None]) -> None:
    _current.reset(token)
