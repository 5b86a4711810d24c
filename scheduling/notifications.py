"""Lifecycle notifications, published through the mediator: subscribe with ordinary ``NotificationHandler``s.

``NotificationHandler[ScheduledCommandNotification]`` receives all five.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime

from mediator import Notification

from .entries import ScheduledCommandEntry

__all__ = [
    "ScheduledCommandCancelled",
    "ScheduledCommandCompleted",
    "ScheduledCommandExpired",
    "ScheduledCommandFailed",
    "ScheduledCommandNotification",
    "ScheduledCommandRetrying",
]


class ScheduledCommandNotification(Notification):
    """Base of the lifecycle notifications; every one names the entry and when it happened.

    .. versionadded:: 0.1
    """

    command_id: str
    command_type: str
    correlation_id: str | None = None
    metadata: dict[str, str] | None = None
    occurred_at: AwareDatetime

    @classmethod
    def _about(cls, entry: ScheduledCommandEntry, occurred_at: datetime) -> dict[str, object]:
        return {
            "command_id": entry.id,
            "command_type": entry.command_type,
            "correlation_id": entry.correlation_id,
            "metadata": entry.metadata,
            "occurred_at": occurred_at,
        }


class ScheduledCommandCompleted(ScheduledCommandNotification):
    """The command ran successfully."""

    #: JSON of the handler's result, or None.
    result_payload: str | None = None

    @classmethod
    def of(
        cls, entry: ScheduledCommandEntry, occurred_at: datetime, result_payload: str | None
    ) -> ScheduledCommandCompleted:
        return cls(**cls._about(entry, occurred_at), result_payload=result_payload)


class ScheduledCommandRetrying(ScheduledCommandNotification):
    """An attempt failed; the command runs again at ``next_attempt_at``."""

    #: The attempt that failed (1-based).
    attempt: int
    #: ``"ExceptionType: message"``.
    error: str
    next_attempt_at: AwareDatetime

    @classmethod
    def of(
        cls, entry: ScheduledCommandEntry, occurred_at: datetime, attempt: int, error: str, next_attempt_at: datetime
    ) -> ScheduledCommandRetrying:
        return cls(
            **cls._about(entry, occurred_at),
            attempt=attempt,
            error=error,
            next_attempt_at=next_attempt_at,
        )


class ScheduledCommandFailed(ScheduledCommandNotification):
    """Dead-lettered: every allowed attempt failed, or the command can never run."""

    #: Attempts made.
    attempts: int
    #: ``"ExceptionType: message"`` of the last failure.
    error: str

    @classmethod
    def of(
        cls, entry: ScheduledCommandEntry, occurred_at: datetime, attempts: int, error: str
    ) -> ScheduledCommandFailed:
        return cls(**cls._about(entry, occurred_at), attempts=attempts, error=error)


class ScheduledCommandExpired(ScheduledCommandNotification):
    """Not started before its expiry time."""

    @classmethod
    def of(cls, entry: ScheduledCommandEntry, occurred_at: datetime) -> ScheduledCommandExpired:
        return cls(**cls._about(entry, occurred_at))


class ScheduledCommandCancelled(ScheduledCommandNotification):
    """Cancelled before it ran (or, asked to, while it ran)."""

    #: Why, when the store says: a dependant cancelled because of its parent names it
    #: (``"ParentNotCompleted: parent 3f2... ended FAILED"``); None for an operator's cancel.
    #:
    #: .. versionadded:: 0.7
    reason: str | None = None

    @classmethod
    def of(
        cls, entry: ScheduledCommandEntry, occurred_at: datetime, *, reason: str | None = None
    ) -> ScheduledCommandCancelled:
        return cls(**cls._about(entry, occurred_at), reason=reason)
