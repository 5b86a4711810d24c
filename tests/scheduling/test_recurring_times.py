"""The pure functions of recurring schedules: cron validation, occurrences (DST included) and misfire arithmetic."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scheduling.errors import InvalidScheduleError
from scheduling.options import ScheduleOptions
from scheduling.recurring import (
    RecurringSchedule,
    check_definition,
    next_occurrence,
    occurrences_after,
    validate_cron,
    validate_timezone,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def schedule(**fields: Any) -> RecurringSchedule:
    values: dict[str, Any] = {
        "name": "s",
        "command_type": "t.T",
        "payload": "{}",
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(fields)
    if "cron" not in values and "interval" not in values:
        values["cron"] = "*/15 * * * *"
    return RecurringSchedule(**values)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def first(s: RecurringSchedule, after: datetime, count: int) -> list[datetime]:
    return list(itertools.islice(occurrences_after(s, after), count))


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("0 9 * * 1-5", "0 9 * * 1-5"),
        ("  */5   * * * * ", "*/5 * * * *"),
        ("0 9 * * MON-FRI", "0 9 * * MON-FRI"),
        ("0 0 1 JAN,JUL *", "0 0 1 JAN,JUL *"),
        ("30 0 9 * * 1-5", "30 0 9 * * 1-5"),
        ("@hourly", "@hourly"),
        ("@DAILY", "@daily"),
        ("@weekly", "@weekly"),
        ("@monthly", "@monthly"),
        ("@yearly", "@yearly"),
    ],
)
def test_valid_cron_expressions_are_normalized(text: str, normalized: str) -> None:
    assert validate_cron(text) == normalized


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("* * * *", "4 fields"),
        ("* * * * * * *", "7 fields"),
        ("61 * * * *", "invalid cron expression"),
        ("0 9 * * FUNDAY", "invalid cron expression"),
        ("@often", "unknown cron alias"),
        ("0 0 30 2 *", "never matches"),
        ("every day", "fields"),
    ],
)
def test_invalid_cron_expressions_are_refused_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(InvalidScheduleError, match=message):
        validate_cron(text)


def test_unknown_time_zone_is_named() -> None:
    with pytest.raises(InvalidScheduleError, match="unknown time zone 'Mars/Olympus'"):
        validate_timezone("Mars/Olympus")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cron": None, "interval": None}, "exactly one of cron= and interval="),
        ({"cron": "* * * * *", "interval": timedelta(minutes=1)}, "exactly one"),
        ({"cron": None, "interval": timedelta(0)}, "must be positive"),
        ({"cron": None, "interval": timedelta(seconds=-5)}, "must be positive"),
        ({"cron": "* * * * *", "timezone": "Nowhere/City"}, "unknown time zone"),
        ({"cron": "* * * * *", "options": ScheduleOptions(delay=timedelta(1))}, "options.delay"),
        ({"cron": "* * * * *", "options": ScheduleOptions(idempotency_key="k")}, "options.idempotency_key"),
        ({"cron": "* * * * *", "name": " padded"}, "schedule name"),
    ],
)
def test_check_definition_names_the_schedule_and_the_problem(fields: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {"name": "nightly", "cron": None, "interval": None, "timezone": "UTC"}
    values["options"] = ScheduleOptions()
    values.update(fields)
    name = values.pop("name")
    with pytest.raises(InvalidScheduleError, match=message) as caught:
        check_definition(name, **values)
    assert caught.value.name == name


# -- occurrences and DST ----------------------------------------------------------------------------------------

# (cron, zone, after (UTC), expected first occurrences (UTC))
DST_TABLE = [
    # Paris springs forward on 2026-03-29 at 02:00 CET -> 03:00 CEST: 02:30 does not exist, runs at 03:30 CEST.
    (
        "30 2 * * *",
        "Europe/Paris",
        utc(2026, 3, 27),
        [utc(2026, 3, 27, 1, 30), utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 30), utc(2026, 3, 30, 0, 30)],
    ),
    # Paris falls back on 2026-10-25 at 03:00 CEST -> 02:00 CET: 02:30 happens twice, runs once (the first).
    (
        "30 2 * * *",
        "Europe/Paris",
        utc(2026, 10, 24),
        [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)],
    ),
    # Every 30 minutes through the repeated hour: each wall time once, the second pass of 02:xx is not run.
    (
        "*/30 * * * *",
        "Europe/Paris",
        utc(2026, 10, 24, 23, 45),
        [utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 2, 0), utc(2026, 10, 25, 2, 30)],
    ),
    # Every 30 minutes through the gap: no instant twice, no hole in UTC.
    (
        "*/30 * * * *",
        "Europe/Paris",
        utc(2026, 3, 29, 0, 15),
        [utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 2, 0)],
    ),
    # New York springs forward on 2026-03-08 at 02:00 EST: 02:30 runs at 03:30 EDT (07:30 UTC).
    (
        "30 2 * * *",
        "America/New_York",
        utc(2026, 3, 7),
        [utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7, 30), utc(2026, 3, 9, 6, 30)],
    ),
    # New York falls back on 2026-11-01 at 02:00 EDT: 01:30 happens twice, runs once (01:30 EDT, 05:30 UTC).
    (
        "30 1 * * *",
        "America/New_York",
        utc(2026, 10, 31),
        [utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)],
    ),
    # Weekdays at 09:00 Paris: Friday, then Monday (winter: UTC+1).
    ("0 9 * * 1-5", "Europe/Paris", utc(2026, 3, 6, 9), [utc(2026, 3, 9, 8), utc(2026, 3, 10, 8)]),
    # Six fields, seconds first.
    ("15 0 12 * * *", "UTC", utc(2026, 1, 1), [utc(2026, 1, 1, 12, 0, 15), utc(2026, 1, 2, 12, 0, 15)]),
    ("@monthly", "UTC", utc(2026, 1, 15), [utc(2026, 2, 1), utc(2026, 3, 1)]),
]


@pytest.mark.parametrize(("cron", "zone", "after", "expected"), DST_TABLE)
def test_cron_occurrences_in_a_time_zone(cron: str, zone: str, after: datetime, expected: list[datetime]) -> None:
    assert first(schedule(cron=cron, timezone=zone), after, len(expected)) == expected


@pytest.mark.parametrize(
    ("day", "runs"),
    [(utc(2026, 3, 28, 23), 92), (utc(2026, 10, 24, 22), 96), (utc(2026, 6, 1, 22), 96)],
    ids=["spring-forward (23 h)", "fall-back (25 h)", "summer"],
)
def test_every_quarter_hour_over_a_local_day_never_repeats_an_instant(day: datetime, runs: int) -> None:
    """Local midnight to midnight in Paris: as many runs as distinct wall times that exist, each instant once."""
    s = schedule(cron="*/15 * * * *", timezone="Europe/Paris")
    paris = validate_timezone("Europe/Paris")
    start = day - timedelta(seconds=1)
    moments = list(itertools.takewhile(lambda t: t < day + timedelta(hours=26), occurrences_after(s, start)))
    local_date = day.astimezone(paris).date()
    local_day = [m for m in moments if m.astimezone(paris).date() == local_date]
    assert len(local_day) == runs
    assert len(set(moments)) == len(moments)
    assert moments == sorted(moments)


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (T0 - timedelta(hours=1), [T0, T0 + timedelta(minutes=5)]),
        (T0, [T0 + timedelta(minutes=5), T0 + timedelta(minutes=10)]),
        (T0 + timedelta(minutes=7), [T0 + timedelta(minutes=10), T0 + timedelta(minutes=15)]),
        (T0 + timedelta(minutes=10), [T0 + timedelta(minutes=15), T0 + timedelta(minutes=20)]),
    ],
)
def test_interval_occurrences_count_from_the_anchor_in_utc(after: datetime, expected: list[datetime]) -> None:
    assert first(schedule(interval=timedelta(minutes=5), timezone="Europe/Paris"), after, 2) == expected


# -- misfire ----------------------------------------------------------------------------------------------------

OCCURRENCE = utc(2026, 1, 1, 10, 0)
LATE = utc(2026, 1, 1, 13, 5)  # three hours later: 12 quarter hours missed (10:15 ... 13:00)


@pytest.mark.parametrize(
    ("policy", "now", "expected"),
    [
        ("skip", OCCURRENCE, utc(2026, 1, 1, 10, 15)),
        ("skip", LATE, utc(2026, 1, 1, 13, 15)),
        ("run_once", LATE, utc(2026, 1, 1, 13, 15)),
        ("run_all", OCCURRENCE, utc(2026, 1, 1, 10, 15)),
        ("run_all", LATE, utc(2026, 1, 1, 10, 15)),
        ("run_all", utc(2026, 1, 1, 13, 0), utc(2026, 1, 1, 10, 15)),
    ],
)
def test_next_occurrence_by_misfire_policy(policy: Any, now: datetime, expected: datetime) -> None:
    assert next_occurrence(schedule(misfire_policy=policy), OCCURRENCE, now) == expected


def test_run_all_catches_up_at_most_max_catch_up_most_recent_occurrences() -> None:
    s = schedule(misfire_policy="run_all")
    assert next_occurrence(s, OCCURRENCE, LATE, max_catch_up=5) == utc(2026, 1, 1, 12, 0)  # 12:00 ... 13:00
    interval = schedule(interval=timedelta(minutes=15), misfire_policy="run_all", created_at=OCCURRENCE)
    assert next_occurrence(interval, OCCURRENCE, LATE, max_catch_up=5) == utc(2026, 1, 1, 12, 0)
    assert next_occurrence(interval, OCCURRENCE, LATE) == utc(2026, 1, 1, 10, 15)


def test_a_schedule_round_trips_through_its_stored_form() -> None:
    s = schedule(
        interval=timedelta(seconds=90),
        options=ScheduleOptions(priority=3, max_retries=1, metadata={"k": "v"}, timeout=timedelta(seconds=5)),
        misfire_policy="run_once",
    )
    assert RecurringSchedule.from_stored(s.to_stored()) == s
