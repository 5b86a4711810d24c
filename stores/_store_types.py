"""The value types of the store contract (``stores.base`` re-exports them): the listeners' signatures, a reclaimed
entry, and the counts and readings the operator queries return."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from .entries import ScheduledCommandEntry, ScheduledCommandStatus

__all__ = [
    "DependantsCancelledListener",
    "FinishListener",
    "FinishedCount",
    "ReclaimedEntry",
    "StatusCount",
    "StoreReading",
    "WakeupListener",
    "check_bucket",
    "finished_counts",
]

#: Called with the earliest due time of entries that just became PENDING (added, requeued or released).
WakeupListener = Callable[[datetime], None]
#: Called with the id of a watched entry that reached a terminal status (or may have: the caller re-reads it).
FinishListener = Callable[[str], None]
#: Called, after the commit, with the dependants this store instance cancelled because a parent ended otherwise than
#: their condition needs (and the cascade below them), as stored: CANCELLED, ``error_message`` naming the parent.
DependantsCancelledListener = Callable[[Sequence[ScheduledCommandEntry]], None]


class ReclaimedEntry(NamedTuple):
    """An entry taken over from a worker whose lease expired."""

    #: The entry, now PROCESSING under the reclaiming worker's new lease; ``started_at`` is the lost attempt's.
    entry: ScheduledCommandEntry
    #: The worker that held the expired lease.
    previous_owner: str | None
    #: When that lease expired.
    previous_lease_expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class FinishedCount:
    """How many entries reached one terminal status within one time bucket (see ``count_finished_since``)."""

    #: The bucket's start: ``since + n * bucket``; it covers ``[start, start + bucket)``.
    start: datetime
    status: ScheduledCommandStatus
    count: int


@dataclass(frozen=True, slots=True)
class StatusCount:
    """How many entries are in one status (see ``count_by_status_estimated``).

    .. versionadded:: 0.6
    """

    count: int
    #: False: ``count`` is an estimate from the database's statistics ("about"), known to be above the bound asked.
    exact: bool = True


@dataclass(frozen=True, slots=True)
class StoreReading:
    """What the store gauges show, read at one moment (see ``read_gauges``)."""

    counts: dict[ScheduledCommandStatus, int]
    #: The earliest ``scheduled_for`` of a PENDING entry, or None.
    next_due_at: datetime | None
    #: PROCESSING entries under a lease that has not expired (``count_running``).
    running: int
    #: The statuses whose count is an estimate ("about", above the ``exact_up_to`` asked; see ``read_gauges``);
    #: empty when every count is exact. Never PROCESSING.
    estimated: frozenset[ScheduledCommandStatus] = frozenset()


def check_bucket(bucket: timedelta) -> None:
    """``count_finished_since``'s argument check, for store implementations."""
    if bucket <= timedelta(0):
        raise ValueError(f"bucket must be a positive duration, got {bucket!r}")


def finished_counts(
    since: datetime, bucket: timedelta, counts: dict[tuple[int, ScheduledCommandStatus], int]
) -> list[FinishedCount]:
    """``count_finished_since``'s answer from counts keyed by (bucket index, status), for store implementations."""
    return [
        FinishedCount(start=since + index * bucket, status=status, count=count)
        for (index, status), count in sorted(counts.items(), key=lambda item: (item[0][0], item[0][1].value))
        if count
    ]
