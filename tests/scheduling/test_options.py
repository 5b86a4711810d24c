"""ScheduleOptions and SchedulerSettings validate at the edge, naming the offending value."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from scheduling import ScheduleOptions, SchedulerSettings

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scheduled_for": datetime(2026, 3, 1, 12, 0)}, "scheduled_for must be timezone-aware"),
        ({"delay": timedelta(seconds=-1)}, "delay must not be negative"),
        ({"delay": timedelta(seconds=1), "scheduled_for": NOW}, "not both"),
        ({"max_retries": -1}, "greater than or equal to 0"),
        ({"expires_after": timedelta(0)}, "expires_after must be positive"),
        ({"expires_after": timedelta(seconds=-5)}, "expires_after must be positive"),
        ({"timeout": timedelta(0)}, "timeout must be positive"),
        ({"priorty": 3}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_options_are_rejected_with_a_clear_message(kwargs: dict[str, object], message: str) -> None:
    """Each invalid option raises a ValidationError whose text names the problem."""
    with pytest.raises(ValidationError, match=message):
        ScheduleOptions(**kwargs)  # type: ignore[arg-type]


def test_scheduled_for_is_normalized_to_utc() -> None:
    """An aware datetime in another zone is stored as the same instant in UTC."""
    paris = timezone(timedelta(hours=1))
    options = ScheduleOptions(scheduled_for=datetime(2026, 3, 1, 13, 0, tzinfo=paris))
    assert options.scheduled_for == NOW
    assert options.scheduled_for is not None and options.scheduled_for.tzinfo is UTC


@pytest.mark.parametrize(
    ("options", "due"),
    [
        (ScheduleOptions(), NOW),
        (ScheduleOptions(delay=timedelta(minutes=5)), NOW + timedelta(minutes=5)),
        (ScheduleOptions(delay=timedelta(0)), NOW),
        (ScheduleOptions(scheduled_for=NOW - timedelta(days=1)), NOW - timedelta(days=1)),
    ],
)
def test_due_time_from_options(options: ScheduleOptions, due: datetime) -> None:
    """Neither delay nor scheduled_for means due now; a past scheduled_for is kept (due at once)."""
    assert options.due_at(NOW) == due


def test_options_are_immutable() -> None:
    """Options are frozen models."""
    options = ScheduleOptions(priority=1)
    with pytest.raises(ValidationError):
        options.priority = 2  # type: ignore[misc]


def test_settings_defaults_match_the_contract() -> None:
    """The defaults are exactly those of API.md section 2."""
    settings = SchedulerSettings()
    assert settings.enabled is True
    assert settings.polling_interval == timedelta(seconds=5)
    assert settings.batch_size == 50
    assert settings.max_concurrency == 10
    assert settings.max_retries == 3
    assert settings.retry_delay_base == timedelta(seconds=10)
    assert settings.exponential_backoff is True
    assert settings.max_retry_delay == timedelta(hours=1)
    assert settings.retry_jitter is False
    assert settings.lease_duration == timedelta(seconds=60)
    assert settings.shutdown_grace == timedelta(seconds=30)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"polling_interval": timedelta(0)}, "polling_interval must be positive"),
        ({"lease_duration": timedelta(seconds=-1)}, "lease_duration must be positive"),
        ({"wait_recheck_interval": timedelta(0)}, "wait_recheck_interval must be positive"),
        ({"batch_size": 0}, "greater than or equal to 1"),
        ({"max_concurrency": 0}, "greater than or equal to 1"),
        ({"shutdown_grace": timedelta(seconds=-1)}, "shutdown_grace must not be negative"),
    ],
)
def test_invalid_settings_are_rejected(kwargs: dict[str, object], message: str) -> None:
    """Settings that cannot work are refused at construction."""
    with pytest.raises(ValidationError, match=message):
        SchedulerSettings(**kwargs)  # type: ignore[arg-type]


def test_default_worker_ids_are_distinct() -> None:
    """Two settings objects in one process get different worker ids."""
    assert SchedulerSettings().worker_id != SchedulerSettings().worker_id
