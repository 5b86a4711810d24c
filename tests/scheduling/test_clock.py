"""Clocks: UTC-aware time; ManualClock wakes sleepers when it passes their deadline."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from scheduling import ManualClock, SystemClock

START = datetime(2026, 3, 1, tzinfo=UTC)


def test_system_clock_is_utc_aware() -> None:
    """SystemClock.now() is timezone-aware UTC."""
    assert SystemClock().now().tzinfo is UTC


def test_manual_clock_rejects_naive_start() -> None:
    """A naive start time is an error, never guessed."""
    with pytest.raises(ValueError, match="timezone-aware"):
        ManualClock(datetime(2026, 3, 1))


def test_manual_clock_moves_only_when_told() -> None:
    """advance() and set() move the clock; nothing else does; advancing backwards is refused."""
    clock = ManualClock(START)
    assert clock.now() == START
    assert clock.advance(timedelta(minutes=1)) == START + timedelta(minutes=1)
    assert clock.set(START) == START
    with pytest.raises(ValueError, match="negative"):
        clock.advance(timedelta(seconds=-1))


async def test_manual_clock_wakes_sleepers_in_deadline_order() -> None:
    """sleep_until returns only once the clock passed the deadline."""
    clock = ManualClock(START)
    woke: list[str] = []

    async def sleeper(name: str, seconds: int) -> None:
        await clock.sleep_until(START + timedelta(seconds=seconds))
        woke.append(name)

    tasks = [asyncio.create_task(sleeper("late", 20)), asyncio.create_task(sleeper("early", 10))]
    await asyncio.sleep(0)
    assert woke == []
    clock.advance(timedelta(seconds=10))
    await asyncio.sleep(0)
    assert woke == ["early"]
    clock.advance(timedelta(seconds=10))
    await asyncio.gather(*tasks)
    assert woke == ["early", "late"]


async def test_sleep_until_the_past_returns_at_once() -> None:
    """A deadline already reached does not block."""
    clock = ManualClock(START)
    await asyncio.wait_for(clock.sleep_until(START - timedelta(days=1)), timeout=1)
