"""Outcomes over time on SQL: settled hours from a rollup table, the rest counted from the entries' indexes.

Counting a week of outcomes from a million finished entries reads a million index entries (over half a second on
PostgreSQL); a week of hours from the rollup reads a few hundred rows. Nothing on the path that records outcomes
writes here: the first reader that asks for an hour after it has settled (``SETTLE`` after its end) counts it from
the entries and attempts (one grouped range scan each) and stores the counts with a marker row for the hour, in one
transaction. Two readers rolling up the same hour at once insert the same counts; the second one's rows are
ignored (``ON CONFLICT DO NOTHING``). The current hour, the settling one and every minute-unit question are
counted live, from ``ix_scheduled_commands_finished_at`` and ``ix_scheduled_command_attempts_failing``: at most a little
over an hour of rows.

An outcome stamped into an hour after that hour was rolled up (a worker whose clock is ``SETTLE`` or more behind)
is missing from the history; purging entries leaves the rolled-up hours as they were.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, String, and_, func, not_, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from stores.entries import ScheduledCommandStatus
from stores.outcomes import HOUR, MINUTE, OUTCOMES, Outcome, OutcomeCount, sorted_counts, truncate

from ._tables import ATTEMPTS, ENTRIES, FAILING_ATTEMPTS_SQL, OUTCOME_HOURS, OUTCOME_ROLLUP

__all__ = ["SETTLE", "count_live", "merge", "missing_hours", "read_rollup", "roll_up", "rollup_span"]

#: How long after its end an hour is rolled up: outcomes are stamped by the workers' clocks, which may lag the
#: reader's a little, and a batch of outcomes commits a moment after it was stamped.
SETTLE = timedelta(minutes=15)

_STATUS_OUTCOMES: dict[str, Outcome] = {
    ScheduledCommandStatus.COMPLETED.value: "completed",
    ScheduledCommandStatus.FAILED.value: "failed",
    ScheduledCommandStatus.EXPIRED.value: "expired",
}

Counts = dict[tuple[datetime, str, Outcome], int]


def rollup_span(since: datetime, until: datetime, unit: timedelta) -> tuple[datetime, datetime] | None:
    """The whole hours of ``[since, until)`` answered from the rollup: those settled at ``until``; None if none."""
    if unit != HOUR:
        return None
    first = truncate(since, HOUR)
    if first < since:
        first += HOUR
    end = truncate(until - SETTLE, HOUR)
    return (first, end) if first < end else None


def _truncated(column: Any, unit: timedelta, dialect: str) -> Any:
    """The start of the minute or hour of a timestamp column, in SQL: a naive UTC timestamp or its text."""
    if dialect == "postgresql":
        # On the UTC wall clock, whatever the session's time zone.
        return func.date_trunc("minute" if unit == MINUTE else "hour", func.timezone("UTC", column), type_=DateTime())
    # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC: the hour and the minute are prefixes of that text.
    return func.substr(column, 1, 16 if unit == MINUTE else 13, type_=String())


def _start(value: object, unit: timedelta) -> datetime | None:
    """A truncated value from ``_truncated`` as a UTC datetime; None for one that is no timestamp."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return datetime.strptime(value, "%Y-%m-%d %H:%M" if unit == MINUTE else "%Y-%m-%d %H").replace(tzinfo=UTC)
    return None


async def count_live(conn: AsyncConnection, since: datetime, until: datetime, unit: timedelta) -> Counts:
    """Outcomes in ``[since, until)`` per ``unit`` and command type, counted from the entries and attempts."""
    dialect = conn.dialect.name
    counts: Counts = {}
    finished = _truncated(ENTRIES.c.completed_at, unit, dialect)
    by_status = (
        select(finished, ENTRIES.c.command_type, ENTRIES.c.status, func.count())
        .where(
            ENTRIES.c.status.in_(list(_STATUS_OUTCOMES)),
            ENTRIES.c.completed_at >= since,
            ENTRIES.c.completed_at < until,
        )
        .group_by(finished, ENTRIES.c.command_type, ENTRIES.c.status)
    )
    for value, command_type, status, count in (await conn.execute(by_status)).all():
        start = _start(value, unit)
        if start is not None and status in _STATUS_OUTCOMES:
            key = (start, str(command_type), _STATUS_OUTCOMES[status])
            counts[key] = counts.get(key, 0) + int(count)
    ended = _truncated(ATTEMPTS.c.finished_at, unit, dialect)
    # A failing attempt is a retry unless it is the one that dead-lettered its entry (see stores/outcomes.py).
    dead_lettering = and_(
        ENTRIES.c.status == ScheduledCommandStatus.FAILED.value, ATTEMPTS.c.attempt >= ENTRIES.c.attempt_count
    )
    retried = (
        select(ended, ENTRIES.c.command_type, func.count())
        .select_from(ATTEMPTS.join(ENTRIES, ENTRIES.c.id == ATTEMPTS.c.entry_id))
        .where(
            ATTEMPTS.c.finished_at >= since,
            ATTEMPTS.c.finished_at < until,
            text(f"scheduled_command_attempts.{FAILING_ATTEMPTS_SQL}"),
            not_(dead_lettering),
        )
        .group_by(ended, ENTRIES.c.command_type)
    )
    for value, command_type, count in (await conn.execute(retried)).all():
        start = _start(value, unit)
        if start is not None:
            key = (start, str(command_type), "retried")
            counts[key] = counts.get(key, 0) + int(count)
    return counts


def _hours(first: datetime, end: datetime) -> list[datetime]:
    return [first + n * HOUR for n in range((end - first) // HOUR)]


async def missing_hours(conn: AsyncConnection, first: datetime, end: datetime) -> list[datetime]:
    """The hours of ``[first, end)`` not rolled up yet."""
    query = select(OUTCOME_HOURS.c.hour).where(OUTCOME_HOURS.c.hour >= first, OUTCOME_HOURS.c.hour < end)
    done = {_start(hour, HOUR) for hour in (await conn.execute(query)).scalars()}
    return [hour for hour in _hours(first, end) if hour not in done]


async def roll_up(conn: AsyncConnection, hours: Iterable[datetime], *, now: datetime) -> None:
    """Count the outcomes of ``hours`` (settled, not rolled up yet) and store them with a marker row per hour."""
    wanted = sorted(set(hours))
    if not wanted:
        return
    counts = await count_live(conn, wanted[0], wanted[-1] + HOUR, HOUR)
    keep = set(wanted)
    rows = [
        {"hour": hour, "command_type": command_type, "outcome": outcome, "count": count}
        for (hour, command_type, outcome), count in counts.items()
        if hour in keep and count
    ]
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    if rows:
        await conn.execute(insert(OUTCOME_ROLLUP).on_conflict_do_nothing(), rows)
    markers = [{"hour": hour, "rolled_up_at": now} for hour in wanted]
    await conn.execute(insert(OUTCOME_HOURS).on_conflict_do_nothing(), markers)


async def read_rollup(conn: AsyncConnection, first: datetime, end: datetime) -> Counts:
    """The rolled-up outcomes of the hours in ``[first, end)``."""
    query = select(
        OUTCOME_ROLLUP.c.hour, OUTCOME_ROLLUP.c.command_type, OUTCOME_ROLLUP.c.outcome, OUTCOME_ROLLUP.c.count
    ).where(OUTCOME_ROLLUP.c.hour >= first, OUTCOME_ROLLUP.c.hour < end)
    counts: Counts = {}
    for hour_value, command_type, outcome, count in (await conn.execute(query)).all():
        hour = _start(hour_value, HOUR)
        if hour is not None and outcome in OUTCOMES:
            counts[(hour, str(command_type), outcome)] = int(count)
    return counts


def merge(*parts: Counts) -> list[OutcomeCount]:
    """The counts of several spans (disjoint) as the store's answer."""
    total: Counts = {}
    for part in parts:
        for key, count in part.items():
            total[key] = total.get(key, 0) + count
    return sorted_counts(total)
