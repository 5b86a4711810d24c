"""Errors raised by scheduling.

Hierarchy::

    SchedulingError
    ├── PayloadTooLargeError       schedule() of a command whose JSON exceeds max_payload_bytes
    ├── NotACommandError           schedule() of something that is not a Command (also a TypeError)
    ├── UnimportableCommandError   schedule() on a durable store of a command class defined in __main__
    ├── InvalidScheduleError       schedule_recurring() with a bad cron, time zone, interval or options
    ├── CommandNotFoundError       wait() or result() of an id the store does not hold (also a LookupError)
    ├── CommandNotFinishedError    result() of a command still PENDING or PROCESSING
    ├── CommandOutcomeError        wait() or result() of a command that did not complete
    │   ├── CommandFailedError        it was dead-lettered (FAILED); carries the stored error message
    │   ├── CommandExpiredError       it expired before it could run
    │   └── CommandCancelledError     it was cancelled
    └── UndeliverableCommandError  a stored entry that can never run (dead-lettered, never raised to callers)
        ├── UnknownCommandTypeError   its type has no registered handler
        └── InvalidPayloadError       its payload no longer validates against the command class

``mediator.HandlerNotFoundError`` is raised by ``schedule()`` for a command type without a handler; ``wait()``
raises the builtin ``TimeoutError`` when its timeout passes first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stores.entries import ScheduledCommandEntry

__all__ = [
    "CommandCancelledError",
    "CommandExpiredError",
    "CommandFailedError",
    "CommandNotFinishedError",
    "CommandNotFoundError",
    "CommandOutcomeError",
    "InvalidPayloadError",
    "InvalidScheduleError",
    "NotACommandError",
    "PayloadTooLargeError",
    "SchedulingError",
    "UndeliverableCommandError",
    "UnimportableCommandError",
    "UnknownCommandTypeError",
]


class SchedulingError(Exception):
    """Base class of scheduling errors."""


class PayloadTooLargeError(SchedulingError, ValueError):
    """The serialized command is larger than ``SchedulerSettings.max_payload_bytes``; nothing was stored."""

    def __init__(self, command_type: str, size: int, limit: int) -> None:
        self.command_type = command_type
        self.size = size
        self.limit = limit
        super().__init__(command_type, size, limit)

    def __str__(self) -> str:
        return (
            f"{self.command_type} serializes to {self.size} bytes, over max_payload_bytes={self.limit}; "
            "store large data elsewhere and schedule a reference to it"
        )


class NotACommandError(SchedulingError, TypeError):
    """Only ``Command`` instances can be scheduled (queries and notifications cannot)."""

    def __init__(self, value: object) -> None:
        self.value = value
        super().__init__(value)

    def __str__(self) -> str:
        return f"only Command instances can be scheduled, got {type(self.value).__qualname__}: {self.value!r:.200}"


class UnimportableCommandError(SchedulingError, TypeError):
    """A command class defined in ``__main__`` (the script being run) was scheduled on a durable store; nothing was
    stored. A worker process can never import it, so the entry could only wait forever. Move the command class (and
    its handler) into a module of your application, or use ``MemoryStore()`` for a single-process script."""

    def __init__(self, command_type: str, store: str) -> None:
        self.command_type = command_type
        self.store = store
        super().__init__(command_type, store)

    def __str__(self) -> str:
        return (
            f"{self.command_type} is defined in __main__, which a worker process cannot import, so {self.store} "
            "would keep it forever; move the command class and its handler into an importable module "
            "(e.g. myapp/commands.py), or pass store=MemoryStore() to SchedulingModule for a single-process script"
        )


class InvalidScheduleError(SchedulingError, ValueError):
    """A recurring schedule's declaration is invalid (cron text, time zone, cron and interval, interval, options);
    nothing was stored. Fix the declaration the message names."""

    def __init__(self, reason: str, name: str | None = None) -> None:
        self.reason = reason
        self.name = name
        super().__init__(reason, name)

    def __str__(self) -> str:
        return f"recurring schedule {self.name!r}: {self.reason}" if self.name is not None else self.reason


class UndeliverableCommandError(SchedulingError):
    """A stored entry can never run; the service dead-letters it with this error."""


class UnknownCommandTypeError(UndeliverableCommandError):
    """The stored command type has no registered handler in this worker (renamed, removed, or not registered)."""

    def __init__(self, command_type: str) -> None:
        self.command_type = command_type
        super().__init__(command_type)

    def __str__(self) -> str:
        return (
            f"command type {self.command_type!r} is not registered with this worker's mediator; "
            "register its handler, then requeue the entry"
        )


class InvalidPayloadError(UndeliverableCommandError):
    """The stored payload does not validate against the command class (the class changed, or the row is corrupt)."""

    def __init__(self, command_type: str, reason: str) -> None:
        self.command_type = command_type
        self.reason = reason
        super().__init__(command_type, reason)

    def __str__(self) -> str:
        return f"payload of {self.command_type} no longer validates: {self.reason}"


class CommandNotFoundError(SchedulingError, LookupError):
    """``wait()`` or ``result()`` was given an id the store does not hold: never scheduled there, scheduled in a
    transaction that rolled back, or purged. Check the id and the store the scheduler uses.

    .. versionadded:: 0.5
    """

    def __init__(self, command_id: str, store: str) -> None:
        self.command_id = command_id
        self.store = store
        super().__init__(command_id, store)

    def __str__(self) -> str:
        return (
            f"no scheduled command {self.command_id!r} in {self.store}: never scheduled there, rolled back, or purged"
        )


class CommandNotFinishedError(SchedulingError):
    """``result()`` was asked for the result of a command that has not finished (PENDING or PROCESSING); use
    ``wait()`` to wait for it.

    .. versionadded:: 0.5
    """

    def __init__(self, entry: ScheduledCommandEntry) -> None:
        self.entry = entry
        self.command_id = entry.id
        super().__init__(entry)

    def __str__(self) -> str:
        return (
            f"{self.entry.command_type} {self.command_id} has not finished (status {self.entry.status.value}); "
            "await scheduler.wait(command_id) to wait for its result"
        )


class CommandOutcomeError(SchedulingError):
    """The command finished without a result: the base of the failed, expired and cancelled outcomes.

    ``entry`` is the finished entry (its attempts: ``scheduler.get_attempts(command_id)``).

    .. versionadded:: 0.5
    """

    def __init__(self, entry: ScheduledCommandEntry) -> None:
        #: The finished entry, as stored.
        self.entry = entry
        #: The command's id.
        self.command_id = entry.id
        #: The stored error message (the last failure's, for a dead-lettered command), or None.
        self.error_message = entry.error_message
        super().__init__(entry)

    def _outcome(self) -> str:
        return "did not complete"

    def __str__(self) -> str:
        text = f"{self.entry.command_type} {self.command_id} {self._outcome()}"
        return f"{text}: {self.error_message}" if self.error_message else text


class CommandFailedError(CommandOutcomeError):
    """The command was dead-lettered (FAILED): its last attempt failed with no retry left, or it could never run.
    ``error_message`` is the stored error; an operator may requeue it (then wait again).

    .. versionadded:: 0.5
    """

    def _outcome(self) -> str:
        return f"failed after {self.entry.attempt_count} attempt(s) and is dead-lettered"


class CommandExpiredError(CommandOutcomeError):
    """The command expired (its ``expires_after`` passed) before it could run.

    .. versionadded:: 0.5
    """

    def _outcome(self) -> str:
        return "expired before it ran"


class CommandCancelledError(CommandOutcomeError):
    """The command was cancelled (by ``cancel()``, its correlation id, its recurring schedule, or an operator
    dismissing it after it failed).

    .. versionadded:: 0.5
    """

    def _outcome(self) -> str:
        return "was cancelled"
