"""The operator transitions of the state machine, stated once for every store: from which status each one starts
and what it changes. A store applies one as a conditional update fenced by that status (``UPDATE ... WHERE status =
:from``; the memory store checks and writes under the event loop), so two operators racing on one entry change it
once, and no store writes its own version of what, say, a requeue resets.

The worker's own transitions (claim, complete, retry, dead letter, expire, release) are fenced by the lease token
and written by the one fenced finish of each store; the decisions behind them (retry or not, when) are the
service's, in ``scheduling``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from .entries import ScheduledCommandStatus
from .schedules import StoredSchedule

__all__ = [
    "CANCEL",
    "DISMISS",
    "REQUEST_CANCEL",
    "REQUEUE",
    "Transition",
    "as_column_values",
    "redefined_schedule",
    "schedule_paused_changes",
]


@dataclass(frozen=True, slots=True)
class Transition:
    """An entry moves from ``source`` with the field changes ``changes(now)`` returns."""

    name: str
    source: ScheduledCommandStatus
    changes: Callable[[datetime], dict[str, Any]]
    #: Further statuses it starts from (a WAITING dependant is cancelled like a PENDING entry).
    also_from: tuple[ScheduledCommandStatus, ...] = ()

    @property
    def sources(self) -> tuple[ScheduledCommandStatus, ...]:
        """Every status the transition starts from."""
        return (self.source, *self.also_from)


#: A PENDING (or WAITING) entry that will not run.
CANCEL = Transition(
    "cancel",
    ScheduledCommandStatus.PENDING,
    lambda now: {"status": ScheduledCommandStatus.CANCELLED, "completed_at": now},
    also_from=(ScheduledCommandStatus.WAITING,),
)
#: A PROCESSING entry whose worker is asked to cancel its attempt (the worker then ends it CANCELLED, fenced).
REQUEST_CANCEL = Transition(
    "request_cancel",
    ScheduledCommandStatus.PROCESSING,
    lambda now: {"cancel_requested_at": now},
)
#: A dead letter run again: due now, with its whole retry budget, no expiry, no completion.
REQUEUE = Transition(
    "requeue",
    ScheduledCommandStatus.FAILED,
    lambda now: {
        "status": ScheduledCommandStatus.PENDING,
        "scheduled_for": now,
        "retry_count": 0,
        "completed_at": None,
        "expires_at": None,
        "cancel_requested_at": None,
    },
)
#: A dead letter an operator will not run again.
DISMISS = Transition(
    "dismiss",
    ScheduledCommandStatus.FAILED,
    lambda now: {"status": ScheduledCommandStatus.CANCELLED, "completed_at": now},
)


def schedule_paused_changes(paused: bool, *, now: datetime, next_generation: Any) -> dict[str, Any]:
    """Pausing or resuming a recurring schedule starts a new generation (so the occurrences of the old one do
    nothing when they run); a paused schedule has no next run. ``next_generation`` is the stored generation plus one
    (a value, or an SQL expression)."""
    changes: dict[str, Any] = {"paused": paused, "generation": next_generation, "updated_at": now}
    if paused:
        changes["next_run_at"] = None
    return changes


def redefined_schedule(stored: StoredSchedule, declared: StoredSchedule) -> StoredSchedule:
    """What an upsert stores when ``declared`` changes the definition of ``stored``: the new definition and
    ``updated_at``, the next generation (so the old definition's occurrences create no more); ``paused``,
    ``created_at`` and the bookkeeping times stay the stored ones."""
    return declared.model_copy(
        update={
            "generation": stored.generation + 1,
            "paused": stored.paused,
            "created_at": stored.created_at,
            "next_run_at": stored.next_run_at,
            "last_run_at": stored.last_run_at,
        }
    )


def as_column_values(changes: dict[str, Any]) -> dict[str, Any]:
    """``changes`` as a SQL store writes them: enum members as their stored values."""
    return {name: value.value if isinstance(value, Enum) else value for name, value in changes.items()}
