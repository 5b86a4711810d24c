"""What the store holds: ``ScheduledCommandEntry`` snapshots, their status, and the attempt audit trail."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

__all__ = ["TERMINAL_STATUSES", "AttemptOutcome", "AttemptRecord", "ScheduledCommandEntry", "ScheduledCommandStatus"]


class ScheduledCommandStatus(StrEnum):
    """Where an entry is in its life. Stored as the member's value.

    .. versionadded:: 0.1
    """

    #: Waiting until ``scheduled_for`` (first run, or a retry after backoff).
    PENDING = "PENDING"
    #: Scheduled ``after=`` other entries that have not reached its condition yet: not claimable; it becomes
    #: PENDING (or CANCELLED, when the condition can no longer hold) with its last parent's outcome.
    #: .. versionadded:: 0.7
    WAITING = "WAITING"
    #: Claimed by a worker, which holds a lease on it.
    PROCESSING = "PROCESSING"
    #: Ran successfully.
    COMPLETED = "COMPLETED"
    #: Dead-lettered: every allowed attempt failed, or it can never run. Only ``requeue()`` runs it again.
    FAILED = "FAILED"
    #: Cancelled before it ran, or while it ran (``cancel(id, running=True)``: its last attempt is ``"cancelled"``).
    CANCELLED = "CANCELLED"
    #: Not started before ``expires_at``.
    EXPIRED = "EXPIRED"


#: Statuses an entry never leaves by itself (FAILED leaves only through ``requeue()``).
TERMINAL_STATUSES = frozenset(
    {
        ScheduledCommandStatus.COMPLETED,
        ScheduledCommandStatus.FAILED,
        ScheduledCommandStatus.CANCELLED,
        ScheduledCommandStatus.EXPIRED,
    }
)

AttemptOutcome = Literal["completed", "failed", "timed_out", "lost", "cancelled"]

#: A count or limit that is never negative (a row written with one is unreadable, and dead-lettered).
_Count = Annotated[int, Field(ge=0)]


def _utf8_text(value: str) -> str:
    """A text UTF-8 can hold. A store hands back bytes that are not UTF-8 (written behind the library's back) as
    surrogate escapes, so that the entry fails here, is read as unreadable and dead-lettered naming its column,
    rather than carry text no log handler or JSON encoder that writes UTF-8 can write."""
    if not value.isascii():
        value.encode()  # UnicodeEncodeError, a ValueError: the validation error names the field
    return value


class ScheduledCommandEntry(BaseModel):
    """A snapshot of one scheduled command, as the store holds it. All datetimes are UTC-aware.

    .. versionadded:: 0.1
    """

    model_config = ConfigDict(frozen=True)

    #: Unique id, returned by ``schedule()``.
    id: str
    #: The command's registered type name (``module.QualifiedName``).
    command_type: Annotated[str, AfterValidator(_utf8_text)]
    #: The command as JSON.
    payload: str
    status: ScheduledCommandStatus
    priority: int = 0
    #: Next due time.
    scheduled_for: AwareDatetime
    created_at: AwareDatetime
    #: Start of the latest attempt.
    started_at: AwareDatetime | None = None
    #: When it reached a terminal status.
    completed_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None
    #: Failed attempts since it was scheduled or last requeued (decides retry or dead letter).
    retry_count: _Count = 0
    #: Attempts recorded over the entry's whole life, requeues included (numbers its AttemptRecords).
    attempt_count: _Count = 0
    max_retries: _Count = 3
    correlation_id: str | None = None
    metadata: dict[str, str] | None = None
    idempotency_key: str | None = None
    #: ``"ExceptionType: message"`` of the last failure.
    error_message: str | None = None
    #: JSON of the handler's result, for commands that return one.
    result_payload: str | None = None
    #: Per-attempt timeout in seconds, from ``ScheduleOptions.timeout``.
    timeout_seconds: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    #: The worker holding the lease while PROCESSING.
    lease_owner: str | None = None
    #: Fencing token of the current claim; a worker whose token no longer matches cannot change the entry.
    lease_token: str | None = None
    lease_expires_at: AwareDatetime | None = None
    #: The recurring schedule this entry is an occurrence of (``schedule_recurring``), or ``None``.
    recurring_name: str | None = None
    #: The occurrence's nominal time (``scheduled_for`` moves on retries; this does not).
    occurrence_at: AwareDatetime | None = None
    #: The generation of the schedule this occurrence was made for (a definition change or a pause starts a new
    #: one; an occurrence of an older generation does nothing when it runs).
    occurrence_generation: int | None = None
    #: The W3C trace context (OpenTelemetry propagator fields, as JSON) active when it was scheduled, or ``None``.
    trace_context: str | None = None
    #: The queue it waits in; a worker claims only entries of its queues (``SchedulerSettings.queues``).
    queue: str = "default"
    #: At most one entry holding the same lock is PROCESSING at a time, across every worker and queue.
    lock: str | None = None
    #: When an operator asked the worker holding this PROCESSING entry to cancel its attempt
    #: (``cancel(id, running=True)``), or ``None``.
    cancel_requested_at: AwareDatetime | None = None
    #: While WAITING: how many of its parents (``ScheduleOptions.after``) have not reached its condition yet.
    pending_parents: _Count = 0

    @property
    def attempts_allowed(self) -> int:
        return self.max_retries + 1


class AttemptRecord(BaseModel):
    """One attempt at running an entry: the audit trail answers "why did it fail three times".

    .. versionadded:: 0.1
    """

    model_config = ConfigDict(frozen=True)

    #: 1-based.
    attempt: int
    worker_id: str
    started_at: AwareDatetime
    finished_at: AwareDatetime
    outcome: AttemptOutcome
    #: ``"Type: message"``, then the traceback text; ``None`` for a completed attempt.
    error: str | None = None
