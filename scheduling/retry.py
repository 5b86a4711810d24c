"""Retry policy as a pure function: when does retry ``n`` run? tenacity's wait strategies compute the delay."""

from __future__ import annotations

from datetime import datetime, timedelta

from tenacity import RetryCallState, wait_exponential, wait_fixed, wait_random, wait_random_exponential
from tenacity.wait import wait_base

from .options import SchedulerSettings

__all__ = ["next_attempt_at", "retry_delay"]


def _strategy(settings: SchedulerSettings) -> wait_base:
    base = settings.retry_delay_base.total_seconds()
    cap = settings.max_retry_delay.total_seconds()
    if settings.exponential_backoff:
        if settings.retry_jitter:
            return wait_random_exponential(multiplier=base, max=cap)
        return wait_exponential(multiplier=base, exp_base=2, max=cap)
    if settings.retry_jitter:
        return wait_random(0, min(base, cap))
    return wait_fixed(min(base, cap))


def retry_delay(retry_number: int, settings: SchedulerSettings) -> timedelta:
    """The wait before retry ``retry_number`` (1-based): ``base * 2**(n-1)`` capped, or ``base`` when constant.

    With ``retry_jitter``, a uniform draw between 0 and that delay ("full jitter").
    """
    if retry_number < 1:
        raise ValueError(f"retry_number is 1-based, got {retry_number}")
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = retry_number
    return timedelta(seconds=_strategy(settings)(state))


def next_attempt_at(retry_number: int, now: datetime, settings: SchedulerSettings) -> datetime:
    """When retry ``retry_number`` (1-based) is due, failing at ``now``."""
    return now + retry_delay(retry_number, settings)
