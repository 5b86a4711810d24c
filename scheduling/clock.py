"""Time, made explicit: every due time, expiry and backoff is computed from an injectable ``Clock``.

``SystemClock`` is the real one; ``ManualClock`` is a test helper that only moves when told to, and wakes every
``sleep()`` whose deadline it passes, so tests never sleep through a delay.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from abc import ABC, abstractmethod
from datetime import UTC, datetime, timedelta

__all__ = ["Clock", "ManualClock", "SystemClock", "ensure_aware"]


def ensure_aware(value: datetime, name: str = "datetime") -> datetime:
    """Return ``value`` in UTC; a naive datetime is an error, never guessed."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"{name} must be timezone-aware (got naive {value.isoformat()}); use datetime.now(UTC)")
    return value.astimezone(UTC)


class Clock(ABC):
    """What time it is, and a way to wait for a moment.

    .. versionadded:: 0.1
    """

    @abstractmethod
    def now(self) -> datetime:
        """The current time, UTC-aware."""

    @abstractmethod
    async def sleep_until(self, deadline: datetime) -> None:
        """Return once ``now() >= deadline`` (at once if it already is)."""


class SystemClock(Clock):
    """The machine's clock.

    .. versionadded:: 0.1
    """

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, deadline: datetime) -> None:
        delay = (deadline - self.now()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)


class ManualClock(Clock):
    """A clock that moves only when told: ``advance(timedelta)`` or ``set(datetime)``.

    Sleepers whose deadline is reached are woken by the move. Use it in tests with any store.

    .. versionadded:: 0.1
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = ensure_aware(start, "start") if start is not None else datetime(2026, 1, 1, tzinfo=UTC)
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move forward by ``delta`` (which must not be negative); return the new time."""
        if delta < timedelta(0):
            raise ValueError(f"a ManualClock only moves forward; advance({delta!r}) is negative")
        return self.set(self._now + delta)

    def set(self, moment: datetime) -> datetime:
        """Jump to ``moment`` (UTC-aware; backwards is allowed, to simulate a skewed clock)."""
        self._now = ensure_aware(moment, "moment")
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
        return self._now

    async def sleep_until(self, deadline: datetime) -> None:
        if deadline <= self._now:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._counter), future))
        await future
