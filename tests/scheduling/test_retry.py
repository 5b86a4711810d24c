"""The retry policy is a pure function; this table pins it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scheduling import SchedulerSettings
from scheduling.retry import next_attempt_at, retry_delay

DEFAULTS = SchedulerSettings()
CONSTANT = SchedulerSettings(exponential_backoff=False)
SMALL_CAP = SchedulerSettings(max_retry_delay=timedelta(seconds=30))


@pytest.mark.parametrize(
    ("settings", "retry", "seconds"),
    [
        (DEFAULTS, 1, 10),
        (DEFAULTS, 2, 20),
        (DEFAULTS, 3, 40),
        (DEFAULTS, 4, 80),
        (DEFAULTS, 5, 160),
        (DEFAULTS, 9, 2560),
        (DEFAULTS, 10, 3600),  # capped by max_retry_delay (1 h)
        (DEFAULTS, 50, 3600),
        (SMALL_CAP, 2, 20),
        (SMALL_CAP, 3, 30),
        (CONSTANT, 1, 10),
        (CONSTANT, 4, 10),
        (SchedulerSettings(exponential_backoff=False, max_retry_delay=timedelta(seconds=3)), 1, 3),
    ],
)
def test_retry_delay_table(settings: SchedulerSettings, retry: int, seconds: float) -> None:
    """Retry n waits base * 2**(n-1), capped; constant base without exponential backoff."""
    assert retry_delay(retry, settings) == timedelta(seconds=seconds)


@pytest.mark.parametrize("retry", [1, 2, 3, 4, 5, 12])
@pytest.mark.parametrize("exponential", [True, False])
def test_jitter_stays_within_bounds(retry: int, exponential: bool) -> None:
    """With jitter, the delay is drawn between 0 and the un-jittered delay."""
    plain = SchedulerSettings(exponential_backoff=exponential)
    jittered = SchedulerSettings(exponential_backoff=exponential, retry_jitter=True)
    bound = retry_delay(retry, plain)
    draws = {retry_delay(retry, jittered) for _ in range(200)}
    assert all(timedelta(0) <= d <= bound for d in draws)
    assert len(draws) > 1


def test_next_attempt_at_adds_the_delay() -> None:
    """next_attempt_at is now plus the delay."""
    now = datetime(2026, 3, 1, tzinfo=UTC)
    assert next_attempt_at(2, now, DEFAULTS) == now + timedelta(seconds=20)


def test_retry_numbers_are_one_based() -> None:
    """Retry 0 is a programming error."""
    with pytest.raises(ValueError, match="1-based"):
        retry_delay(0, DEFAULTS)
