"""Recurring commands: the ``RecurringSchedule`` model and the pure functions that compute its occurrences.

Cron expressions are parsed and iterated by croniter over *naive local wall-clock times*, and each wall time is
mapped to UTC here, once: croniter iterating aware local times yields an ambiguous wall time twice on a fall-back
day. The mapping uses ``fold=0``: an ambiguous wall time (fall-back) is its first instant, so it runs once; a wall
time in a spring-forward gap is shifted forward by the gap (02:30 becomes 03:30). An instant that is not strictly
after the previous one is dropped, so no instant is ever yielded twice. Interval schedules are plain UTC arithmetic
from an anchor (the schedule's first declaration), with no time-zone effect.

See docs/recurring.md for the rules, with examples.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter  # type: ignore[import-untyped]
from pydantic import AwareDatetime, BaseModel, ConfigDict, model_validator

from stores.entries import ScheduledCommandEntry
from stores.schedules import MisfirePolicy, StoredSchedule

from .errors import InvalidScheduleError
from .options import ScheduleOptions
from .storable import check_storable_text

__all__ = [
    "MAX_CATCH_UP",
    "MisfirePolicy",
    "RecurringSchedule",
    "check_definition",
    "next_occurrence",
    "occurrence_entry",
    "occurrences_after",
    "validate_cron",
    "validate_timezone",
]

#: ``run_all`` runs at most this many missed occurrences of one schedule after a downtime: the most recent ones.
MAX_CATCH_UP = 100

#: The @-aliases croniter understands (``@midnight`` and ``@annually`` are synonyms of ``@daily`` and ``@yearly``).
CRON_ALIASES = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})

#: The longest schedule name (it is part of a stored idempotency key).
MAX_NAME_LENGTH = 200

_PROBE = datetime(2001, 1, 1)


def _cron(expression: str, start: datetime) -> Any:
    """A croniter over naive wall times; six fields are read seconds first."""
    six = not expression.startswith("@") and len(expression.split(" ")) == 6
    return croniter(expression, start, second_at_beginning=six)


def validate_cron(text: str) -> str:
    """Check a cron expression and return it normalized (single spaces, lower-case alias).

    Five fields (minute hour day-of-month month day-of-week) or six with seconds first; ranges, lists, steps,
    names (``MON``, ``JAN``) and the aliases ``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``.

    Raises:
        InvalidScheduleError: not a cron expression, or one that never matches (``0 0 30 2 *``).
    """
    if not isinstance(text, str):
        raise InvalidScheduleError(f"a cron expression is text, got {type(text).__qualname__}")
    expression = " ".join(text.split())
    if not expression:
        raise InvalidScheduleError("the cron expression is empty")
    if expression.startswith("@"):
        expression = expression.lower()
        if expression not in CRON_ALIASES:
            raise InvalidScheduleError(f"unknown cron alias {text!r}; use one of {', '.join(sorted(CRON_ALIASES))}")
    else:
        count = len(expression.split(" "))
        if count not in (5, 6):
            raise InvalidScheduleError(
                f"cron expression {text!r} has {count} fields; give 5 (minute hour day month weekday) "
                "or 6 (second minute hour day month weekday)"
            )
    try:
        _cron(expression, _PROBE).get_next(datetime)
    except CroniterBadDateError as exc:
        raise InvalidScheduleError(f"cron expression {text!r} never matches a date") from exc
    except (CroniterError, ValueError, KeyError, TypeError) as exc:
        raise InvalidScheduleError(f"invalid cron expression {text!r}: {exc}") from exc
    return expression


def validate_timezone(name: str) -> ZoneInfo:
    """The ``ZoneInfo`` of an IANA name.

    Raises:
        InvalidScheduleError: the name is not a time zone this system knows.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise InvalidScheduleError(
            f"unknown time zone {name!r}; use an IANA name such as 'Europe/Paris' or 'UTC'"
        ) from exc


def check_definition(
    name: str,
    *,
    cron: str | None,
    interval: timedelta | None,
    timezone: str,
    options: ScheduleOptions,
) -> str | None:
    """Validate a declaration; return the normalized cron expression (``None`` for an interval schedule).

    Raises:
        InvalidScheduleError: naming the schedule and what is wrong.
    """
    try:
        if not isinstance(name, str) or not name.strip() or name != name.strip() or len(name) > MAX_NAME_LENGTH:
            raise InvalidScheduleError(
                f"a schedule name is non-empty text without surrounding spaces, at most {MAX_NAME_LENGTH} characters"
            )
        try:  # what every store can hold: no NUL, no lone surrogate
            check_storable_text(name, "the schedule name")
        except ValueError as exc:
            raise InvalidScheduleError(str(exc)) from None
        if (cron is None) == (interval is None):
            raise InvalidScheduleError("give exactly one of cron= and interval=")
        if interval is not None and not isinstance(interval, timedelta):
            raise InvalidScheduleError(f"the interval is a timedelta, got {type(interval).__qualname__}")
        if interval is not None and interval <= timedelta(0):
            raise InvalidScheduleError(f"the interval must be positive, got {interval!r}")
        validate_timezone(timezone)
        for field in ("scheduled_for", "delay", "idempotency_key"):
            if getattr(options, field) is not None:
                raise InvalidScheduleError(
                    f"options.{field} does not apply to a recurring schedule: each occurrence is due at its "
                    "occurrence time and keyed by the schedule"
                )
        if options.after:
            raise InvalidScheduleError(
                f"options.after ({list(options.after)!r}) does not apply to a recurring schedule: each occurrence is "
                "due at its occurrence time"
            )
        return validate_cron(cron) if cron is not None else None
    except InvalidScheduleError as exc:
        if exc.name is None and isinstance(name, str):
            raise InvalidScheduleError(exc.reason, name) from exc.__cause__
        raise


class RecurringSchedule(BaseModel):
    """A named, durable recurring schedule: a command run at every occurrence of a cron expression or interval.

    .. versionadded:: 0.2
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Unique name; declaring it again updates the schedule (upsert).
    name: str
    #: The command's registered type name (``module.QualifiedName``).
    command_type: str
    #: The command as JSON.
    payload: str
    #: A cron expression (5 fields, or 6 with seconds first), or ``None`` for an interval schedule.
    cron: str | None = None
    #: A positive interval, or ``None`` for a cron schedule.
    interval: timedelta | None = None
    #: IANA time zone the cron expression is read in.
    timezone: str = "UTC"
    #: Per-occurrence options: priority, retries, expiry, timeout, correlation id, metadata.
    options: ScheduleOptions = ScheduleOptions()
    #: What to do about occurrences missed while no worker ran: ``skip``, ``run_once`` or ``run_all``.
    misfire_policy: MisfirePolicy = "skip"
    paused: bool = False
    #: Bumped by every change of the definition and by pause and resume.
    generation: int = 1
    #: The next occurrence created.
    next_run_at: AwareDatetime | None = None
    #: The nominal time of the latest occurrence claimed.
    last_run_at: AwareDatetime | None = None
    #: First declaration; the anchor of interval schedules.
    created_at: AwareDatetime
    updated_at: AwareDatetime

    @model_validator(mode="after")
    def _valid(self) -> Self:
        check_definition(
            self.name, cron=self.cron, interval=self.interval, timezone=self.timezone, options=self.options
        )
        return self

    @classmethod
    def from_stored(cls, stored: StoredSchedule) -> RecurringSchedule:
        values = stored.model_dump(exclude={"options_json"})
        return cls(**values, options=ScheduleOptions.model_validate_json(stored.options_json))

    def to_stored(self) -> StoredSchedule:
        values = self.model_dump(exclude={"options"})
        return StoredSchedule(**values, options_json=self.options.model_dump_json(exclude_defaults=True))


class _Timing(Protocol):
    """What occurrences are computed from (a ``RecurringSchedule`` or a ``StoredSchedule``)."""

    @property
    def cron(self) -> str | None: ...
    @property
    def interval(self) -> timedelta | None: ...
    @property
    def timezone(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...


def occurrences_after(schedule: _Timing, instant: datetime) -> Iterator[datetime]:
    """The schedule's occurrences strictly after ``instant`` (aware), in order, as UTC datetimes; endless."""
    if schedule.interval is not None:
        return _interval_occurrences(schedule.interval, schedule.created_at.astimezone(UTC), instant)
    assert schedule.cron is not None
    return _cron_occurrences(schedule.cron, validate_timezone(schedule.timezone), instant)


def _interval_occurrences(interval: timedelta, anchor: datetime, instant: datetime) -> Iterator[datetime]:
    step = 0 if instant < anchor else (instant - anchor) // interval + 1
    while True:
        yield anchor + step * interval
        step += 1


def _cron_occurrences(expression: str, zone: ZoneInfo, instant: datetime) -> Iterator[datetime]:
    last = instant.astimezone(UTC)
    wall = last.astimezone(zone).replace(tzinfo=None)
    iterator = _cron(expression, wall)
    while True:
        naive: datetime = iterator.get_next(datetime)
        moment = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
        if moment > last:  # a wall time that maps back (a gap, or the repeated hour) is dropped: never twice
            last = moment
            yield moment


def next_occurrence(
    schedule: RecurringSchedule, occurrence_at: datetime, now: datetime, *, max_catch_up: int = MAX_CATCH_UP
) -> datetime:
    """The occurrence to create when the one at ``occurrence_at`` is claimed at ``now``, by misfire policy.

    ``skip`` and ``run_once``: the first occurrence strictly after both. ``run_all``: the one right after
    ``occurrence_at`` even if already past, except that at most ``max_catch_up`` past occurrences are run: when
    more were missed, the catch-up starts at the ``max_catch_up``-th most recent one.
    """
    if schedule.misfire_policy != "run_all":
        return next(occurrences_after(schedule, max(occurrence_at, now)))
    start = occurrence_at
    if schedule.interval is not None:  # no need to walk a long interval backlog one by one
        start = max(start, now - schedule.interval * (max_catch_up + 1))
    window: deque[datetime] = deque(maxlen=max(1, max_catch_up))
    for moment in occurrences_after(schedule, start):
        if moment > now:
            return window[0] if window else moment
        window.append(moment)
    raise AssertionError("unreachable: occurrences are endless")  # pragma: no cover


def occurrence_key(name: str, generation: int, occurrence_at: datetime) -> str:
    """The idempotency key of one occurrence: the store's unique key makes "one entry per schedule, generation
    and occurrence time" a constraint, so two workers creating the same occurrence store it once."""
    return f"recurring:{name}:{generation}:{occurrence_at.isoformat()}"


def occurrence_entry(
    schedule: RecurringSchedule, occurrence_at: datetime, now: datetime, *, default_max_retries: int
) -> ScheduledCommandEntry:
    """The PENDING entry of one occurrence: due at ``occurrence_at``, keyed by schedule, generation and time.

    Under ``skip`` it expires at the following occurrence (or earlier, by ``options.expires_after``), so an
    occurrence that could not start before the next one was due is expired instead of run late.
    """
    options = schedule.options
    expires_at = occurrence_at + options.expires_after if options.expires_after is not None else None
    if schedule.misfire_policy == "skip":
        following = next(occurrences_after(schedule, occurrence_at))
        expires_at = following if expires_at is None else min(expires_at, following)
    from ._new_entry import new_entry  # the scheduler imports the recurring rules: imported when first used

    return new_entry(
        schedule.command_type,
        schedule.payload,
        options,
        scheduled_for=occurrence_at,
        expires_at=expires_at,
        now=now,
        default_max_retries=default_max_retries,
        idempotency_key=occurrence_key(schedule.name, schedule.generation, occurrence_at),
        recurring_name=schedule.name,
        occurrence_at=occurrence_at,
        occurrence_generation=schedule.generation,
    )
