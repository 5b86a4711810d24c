"""Outcomes over time: how many attempts and entries ended how, per minute or hour and command type.

The operator's question "when did failures start, and of which command type" is answered from these counts. Four
outcomes are counted, each at the time it happened:

- ``completed``: an entry became COMPLETED (by ``completed_at``);
- ``retried``: an attempt failed (failed, timed out or lost) and the entry was given another one (by the attempt's
  ``finished_at``); the attempt that dead-lettered an entry is not one;
- ``failed``: an entry became FAILED, a dead letter (by ``completed_at``);
- ``expired``: an entry became EXPIRED (by ``completed_at``).

``count_outcomes_by_scanning`` is the answer from the store's own entries and attempts, for stores that keep few of
them (``MemoryStore``) or cannot group on the server; ``SqlStore`` answers from an hourly rollup table instead
(``stores/sql/_outcomes.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from .entries import AttemptRecord, ScheduledCommandEntry, ScheduledCommandStatus

__all__ = [
    "FAILING_ATTEMPTS",
    "HOUR",
    "MINUTE",
    "OUTCOMES",
    "Outcome",
    "OutcomeCount",
    "check_outcome_range",
    "count_outcomes_by_scanning",
    "is_retried",
    "sorted_counts",
    "truncate",
]

Outcome = Literal["completed", "retried", "failed", "expired"]
#: Every outcome, in the order the dashboard shows them.
OUTCOMES: tuple[Outcome, ...] = ("completed", "retried", "failed", "expired")
#: The attempt outcomes after which an entry is retried (or dead-lettered when it has no attempt left).
FAILING_ATTEMPTS = frozenset({"failed", "timed_out", "lost"})
#: The two units outcomes are counted in.
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)

_BY_STATUS: dict[ScheduledCommandStatus, Outcome] = {
    ScheduledCommandStatus.COMPLETED: "completed",
    ScheduledCommandStatus.FAILED: "failed",
    ScheduledCommandStatus.EXPIRED: "expired",
}


@dataclass(frozen=True, slots=True)
class OutcomeCount:
    """How many of one outcome one command type had within one minute or hour."""

    #: The start of the minute or hour (UTC); it covers ``[start, start + unit)``.
    start: datetime
    command_type: str
    outcome: Outcome
    count: int


def check_outcome_range(since: datetime, until: datetime, unit: timedelta) -> None:
    """``count_outcomes``'s argument check.

    Raises:
        ValueError: ``unit`` is neither a minute nor an hour, a time is naive, or ``until`` is before ``since``.
    """
    if unit not in (MINUTE, HOUR):
        raise ValueError(f"outcomes are counted per minute or per hour, not per {unit!r}")
    for name, value in (("since", since), ("until", until)):
        if value.tzinfo is None:
            raise ValueError(f"{name} must be a UTC-aware datetime, got the naive {value.isoformat()}")
    if until < since:
        raise ValueError(f"until ({until.isoformat()}) is before since ({since.isoformat()})")


def truncate(value: datetime, unit: timedelta) -> datetime:
    """The start of the minute or hour (UTC) ``value`` falls in."""
    value = value.astimezone(UTC)
    minute = value.replace(second=0, microsecond=0)
    return minute if unit == MINUTE else minute.replace(minute=0)


def is_retried(attempt: AttemptRecord, entry: ScheduledCommandEntry | None) -> bool:
    """Whether ``attempt`` failed and its entry was given another attempt (not the attempt that dead-lettered it)."""
    if attempt.outcome not in FAILING_ATTEMPTS:
        return False
    if entry is None:  # purged: its failing attempts cannot be told apart; the entry's last one is kept out
        return False
    return not (entry.status is ScheduledCommandStatus.FAILED and attempt.attempt >= entry.attempt_count)


async def count_outcomes_by_scanning(
    entries: AsyncIterator[ScheduledCommandEntry],
    attempts_of: Callable[[str], Awaitable[list[AttemptRecord]]],
    since: datetime,
    until: datetime,
    unit: timedelta,
) -> list[OutcomeCount]:
    """Outcomes in ``[since, until)`` per ``unit`` and command type, from every entry and its attempts, in order of
    start, command type and outcome (``OUTCOMES`` order); only non-zero counts."""
    check_outcome_range(since, until, unit)
    counts: dict[tuple[datetime, str, Outcome], int] = {}

    def add(at: datetime, command_type: str, outcome: Outcome) -> None:
        if since <= at < until:
            key = (truncate(at, unit), command_type, outcome)
            counts[key] = counts.get(key, 0) + 1

    async for entry in entries:
        outcome = _BY_STATUS.get(entry.status)
        if outcome is not None and entry.completed_at is not None:
            add(entry.completed_at, entry.command_type, outcome)
        if entry.attempt_count:
            for attempt in await attempts_of(entry.id):
                if is_retried(attempt, entry):
                    add(attempt.finished_at, entry.command_type, "retried")
    return sorted_counts(counts)


def sorted_counts(counts: dict[tuple[datetime, str, Outcome], int]) -> list[OutcomeCount]:
    """``OutcomeCount``s of the non-zero ``counts``, ordered by start, command type and outcome."""
    order = {outcome: n for n, outcome in enumerate(OUTCOMES)}
    return [
        OutcomeCount(start=start, command_type=command_type, outcome=outcome, count=count)
        for (start, command_type, outcome), count in sorted(counts.items(), key=lambda i: (*i[0][:2], order[i[0][2]]))
        if count
    ]
