"""The claim loop's alarm: it sleeps until a deadline and is woken early by the store or by freed slots.

Shared by the loop (which sleeps on it), the store (whose wake-up listener it is), the attempts (a retry is a new
due time) and the lease keeper (a finished task frees a slot).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

from .clock import Clock

__all__ = ["Wakeup", "minus"]


class Wakeup:
    """Wakes the claim loop early when something it should claim may exist before its deadline."""

    def __init__(self, clock: Clock, *, ahead: timedelta) -> None:
        self._clock = clock
        self._ahead = ahead  # the loop claims this far ahead, so the deadline for an entry due at t is t - ahead
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_wake_at: datetime | None = None
        #: The loop sleeps because every slot is taken: only a freed slot can give it work.
        self.waiting_for_capacity = False

    def bind(self) -> None:
        """Bind to the running event loop (a service may be run again under another one)."""
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def clear(self) -> None:
        self._event.clear()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait_real(self, seconds: float) -> None:
        """Wait for a wake-up for up to ``seconds`` of real time (not the clock's: for a store to come back)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout=seconds)

    async def sleep_until(self, deadline: datetime) -> None:
        """Sleep until ``deadline`` (on the clock) or a wake-up, whichever comes first."""
        if self._event.is_set():
            return
        self._next_wake_at = deadline
        sleeper = asyncio.ensure_future(self._clock.sleep_until(deadline))
        waker = asyncio.ensure_future(self._event.wait())
        try:
            await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()
            self._next_wake_at = None

    def notify(self, due: datetime) -> None:
        """Store listener: entries became PENDING, due at ``due`` at the earliest (may be called from any thread)."""
        if self.waiting_for_capacity:  # nothing more can be claimed now; a finishing command wakes the loop
            return
        deadline = self._next_wake_at
        if deadline is not None and minus(due, self._ahead) >= deadline:
            return
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._event.set()
        else:
            loop.call_soon_threadsafe(self._event.set)


def minus(moment: datetime, delta: timedelta) -> datetime:
    try:
        return moment - delta
    except OverflowError:  # a clock at the start of time
        return moment
