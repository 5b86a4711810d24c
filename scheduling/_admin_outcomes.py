"""Outcomes over time, the operator's view: completed, retried, failed and expired per bar of a 1 h, 24 h or 7 d
range, and the failures per command type over the same range.

The counts come from ``store.count_outcomes`` (on SQL, settled hours from a rollup table): a 7 day range reads
hours, never the entries themselves, so it answers as fast with millions of finished entries as with a hundred.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel

from stores.base import ScheduledCommandStore
from stores.outcomes import HOUR, MINUTE, OUTCOMES, truncate

__all__ = ["RANGES", "OutcomeBucket", "OutcomeHistory", "OutcomeRange", "TypeFailures", "outcome_history"]

OutcomeRange = Literal["1h", "24h", "7d"]


@dataclass(frozen=True, slots=True)
class _Layout:
    #: The unit the store counts in, and how many units one bar holds.
    unit: timedelta
    per_bar: int
    bars: int


#: Per range: a bar per minute for an hour, per hour for a day, per 6 hours (UTC 00, 06, 12, 18) for a week.
RANGES: dict[OutcomeRange, _Layout] = {
    "1h": _Layout(MINUTE, 1, 60),
    "24h": _Layout(HOUR, 1, 24),
    "7d": _Layout(HOUR, 6, 28),
}


class OutcomeBucket(BaseModel):
    """One bar: the outcomes within ``[start, start + bucket_seconds)``."""

    start: datetime
    #: completed, retried, failed, expired: every one present.
    counts: dict[str, int]


class TypeFailures(BaseModel):
    """One command type's failures over the range: dead letters (failed) and attempts that were retried."""

    command_type: str
    failed: int
    retried: int


class OutcomeHistory(BaseModel):
    """``GET /api/outcomes``: outcomes over the last hour, day or week, ending with the current (partial) bar."""

    range: OutcomeRange
    now: datetime
    since: datetime
    bucket_seconds: float
    #: Per outcome over the whole range, every one present.
    totals: dict[str, int]
    #: Oldest first, empty bars included.
    buckets: list[OutcomeBucket]
    #: Command types with a failure or a retry in the range, most failures first.
    failures_by_type: list[TypeFailures]


def _first_bar(now: datetime, layout: _Layout) -> datetime:
    current = truncate(now, layout.unit)
    if layout.per_bar > 1:  # bars of several hours start at multiples of that many hours of the UTC day
        current -= (current.hour % layout.per_bar) * HOUR
    return current - (layout.bars - 1) * layout.per_bar * layout.unit


async def outcome_history(store: ScheduledCommandStore, now: datetime, range_: OutcomeRange = "1h") -> OutcomeHistory:
    """Outcomes per bar of ``range_`` up to ``now`` (the bar holding ``now`` last), and failures per command type.

    Raises:
        ValueError: ``range_`` is not 1h, 24h or 7d, naming it.
    """
    layout = RANGES.get(range_)
    if layout is None:
        raise ValueError(f"unknown range {range_!r}; use one of {', '.join(RANGES)}")
    now = now.astimezone(UTC)
    since = _first_bar(now, layout)
    bar = layout.per_bar * layout.unit
    buckets = [OutcomeBucket(start=since + n * bar, counts=dict.fromkeys(OUTCOMES, 0)) for n in range(layout.bars)]
    totals = dict.fromkeys(OUTCOMES, 0)
    per_type: dict[str, TypeFailures] = {}
    # Up to and including ``now`` (an outcome stamped by this very clock reading counts); never later, so that a
    # store rolling up settled hours never takes an hour after ``now`` for one.
    until = now + timedelta(microseconds=1)
    for counted in await store.count_outcomes(since, until, unit=layout.unit):
        index = (counted.start - since) // bar
        if not 0 <= index < layout.bars:
            continue
        buckets[index].counts[counted.outcome] += counted.count
        totals[counted.outcome] += counted.count
        if counted.outcome in ("failed", "retried"):
            failures = per_type.setdefault(
                counted.command_type, TypeFailures(command_type=counted.command_type, failed=0, retried=0)
            )
            setattr(failures, counted.outcome, getattr(failures, counted.outcome) + counted.count)
    ranked = sorted(per_type.values(), key=lambda t: (-t.failed, -t.retried, t.command_type))
    return OutcomeHistory(
        range=range_,
        now=now,
        since=since,
        bucket_seconds=bar.total_seconds(),
        totals=totals,
        buckets=buckets,
        failures_by_type=ranked,
    )
