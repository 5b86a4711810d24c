"""The claim loop: claim due entries (never more than the free slots), start them, sleep until the next due time.

It claims entries due within ``CLAIM_AHEAD`` and starts each at its due time, so a claim's round trip is not added
to their start. Between claims it sleeps until shortly before the next due time (capped by ``polling_interval``)
and is woken early (:class:`~scheduling._wakeup.Wakeup`) when a sooner command is scheduled or slots free up. A
failing store is retried with backoff; periodic recovery runs between claims.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime, timedelta

from stores.base import ScheduledCommandStore
from stores.queues import Route

from ._leases import Leases
from ._store_calls import log_failure, run_guarded, store_backoff
from ._wakeup import Wakeup, minus
from .clock import Clock
from .entries import ScheduledCommandEntry
from .options import SchedulerSettings

__all__ = ["CLAIM_AHEAD", "ClaimLoop"]

#: The background loop claims entries due up to this far ahead and starts each at its due time, so the claim's own
#: round trip (a few milliseconds, tens under load) is not added to their start. They hold leases meanwhile (and so
#: cannot be cancelled in that window); ``run_until_idle()`` claims only what is due.
CLAIM_AHEAD = timedelta(milliseconds=50)
#: First wait before claiming again when due entries are there but none could be taken (see ``_unless_blocked``).
BLOCKED_POLL = timedelta(milliseconds=50)
#: The longest such wait while the worker has claimed within the last two ``polling_interval``, so a lock's next
#: entry does not wait long (a queue at its rate wakes the worker sooner still: ``next_start_at``). A worker that
#: claims nothing at all (a paused queue's entries, another application's types) still backs off to
#: ``polling_interval``.
BLOCKED_POLL_WHILE_BUSY = timedelta(milliseconds=100)


class ClaimLoop:
    """Claims due entries and hands each to ``execute`` in a task of its own (after one ``start_batch()`` per
    claim), until stopped."""

    def __init__(
        self,
        store: ScheduledCommandStore,
        settings: SchedulerSettings,
        clock: Clock,
        leases: Leases,
        wakeup: Wakeup,
        *,
        execute: Callable[[ScheduledCommandEntry], Awaitable[None]],
        start_batch: Callable[[], None],
        recover: Callable[[], Awaitable[int]],
        command_types: Collection[str],
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._leases = leases
        self._wakeup = wakeup
        self._execute = execute
        self._start_batch = start_batch
        self._recover = recover
        #: Routing by handler: only entries of these types (in the worker's queues) are claimed; an entry nobody
        #: handles stays PENDING.
        self._route = Route.of(settings.queues, command_types)
        self._worker_id = settings.worker_id
        self._last_claim_full = False
        self._next_recovery_at: datetime | None = None
        self._blocked = 0  # claims in a row that found due entries they could not take
        self._claimed_at: datetime | None = None  # when a claim last took something
        self.stopping = False

    def stop(self) -> None:
        """Stop claiming (the loop returns at its next step)."""
        self.stopping = True
        self._wakeup.set()

    async def run(self) -> None:
        recovery_every = self._settings.heartbeat_interval
        failures = 0
        while not self.stopping:
            now = self._clock.now()
            if self._next_recovery_at is None or now >= self._next_recovery_at:
                self._next_recovery_at = now + recovery_every
                await run_guarded(self._recover)
            self._wakeup.clear()
            try:
                claimed = await self.claim(ahead=CLAIM_AHEAD)
            except Exception as exc:  # noqa: BLE001 - logged by log_failure; the service keeps going
                failures += 1
                delay = store_backoff(failures, cap=self._settings.polling_interval.total_seconds())
                log_failure(
                    exc,
                    "claiming due commands failed (attempt %d); retrying in %.2fs",
                    failures,
                    delay,
                    extra={"action": "claim_failed", "worker_id": self._worker_id},
                )
                # Real time, not the Clock: this waits for a database to come back, not for a due time.
                await self._wakeup.wait_real(delay)
                continue
            failures = 0
            if self.stopping:
                break
            free = self._leases.free
            if self._last_claim_full and free > 0:
                await asyncio.sleep(0)  # a full batch: more may be due; let the new tasks start, then claim again
                continue
            if free <= 0:
                self._wakeup.waiting_for_capacity = True
                try:
                    await self._sleep(now + self._settings.polling_interval)
                finally:
                    self._wakeup.waiting_for_capacity = False
                continue
            await self._sleep(await self._unless_blocked(now, await self._next_wake_deadline(), claimed))

    async def claim(self, *, ahead: timedelta = timedelta(0)) -> list[ScheduledCommandEntry]:
        """Claim what is due by ``now + ahead``, up to the free slots, and start it; an entry not yet due waits in
        its task (holding its slot and its lease) until its due time. Never more than the free slots: a worker holds
        no entry it could not run at once, so idle workers share the work and priorities keep their order."""
        free = self._leases.free
        self._last_claim_full = False
        if free <= 0:
            return []
        limit = min(self._settings.batch_size, free)
        claimed = await self._store.claim_due(
            now=_plus(self._clock.now(), ahead),
            limit=limit,
            worker_id=self._worker_id,
            lease_duration=self._settings.lease_duration,
            route=self._route,
        )
        self._last_claim_full = len(claimed) == limit
        if claimed:
            self._start_batch()
        for entry in claimed:
            self._leases.spawn(entry, self._execute(entry))
        return claimed

    async def _unless_blocked(
        self, now: datetime, deadline: datetime, claimed: list[ScheduledCommandEntry]
    ) -> datetime:
        """``deadline``, unless entries are due that this claim could not take (of another queue or command type,
        of a paused queue, waiting for their lock or their queue's rate): then not sooner than a backoff that starts
        at ``BLOCKED_POLL`` and doubles, up to ``polling_interval`` (``BLOCKED_POLL_WHILE_BUSY`` while the worker
        has claimed within the last two ``polling_interval``), while claims keep coming back empty, so the loop
        neither spins nor leaves a lock's next entry waiting long; and no later than the moment a queue at its
        rate frees its next start (``next_start_at``), so a rate is used as soon as it allows."""
        if claimed:
            self._claimed_at = now
        if claimed or deadline > now:
            self._blocked = 0
            return deadline
        cap = self._settings.polling_interval
        if self._claimed_at is not None and now - self._claimed_at < 2 * cap:
            cap = min(cap, BLOCKED_POLL_WHILE_BUSY)
        backoff = min(BLOCKED_POLL * (1 << min(self._blocked, 16)), cap)
        self._blocked += 1
        wake = now + backoff
        frees_at = await self._next_start_at()
        if frees_at is not None:
            # A start slot counts as free to a claim whose ``now`` (the clock plus CLAIM_AHEAD) reaches it.
            wake = min(wake, max(now, minus(frees_at, CLAIM_AHEAD)))
        return wake

    async def _next_start_at(self) -> datetime | None:
        """When a rate limited queue of this worker's, at its rate, frees its next start (``None``: none is)."""
        try:
            return await self._store.next_start_at(_plus(self._clock.now(), CLAIM_AHEAD), self._route.queues)
        except Exception as exc:  # noqa: BLE001 - logged by log_failure; the backoff still bounds the wait
            log_failure(
                exc, "could not read the next start of a rate limited queue", extra={"action": "next_start_failed"}
            )
            return None

    async def _next_wake_deadline(self) -> datetime:
        now = self._clock.now()
        deadline = now + self._settings.polling_interval
        if self._next_recovery_at is not None:
            deadline = min(deadline, self._next_recovery_at)
        try:
            next_due = await self._store.next_due_at()
        except Exception as exc:  # noqa: BLE001 - logged by log_failure; the service keeps going
            log_failure(exc, "could not read the next due time", extra={"action": "next_due_failed"})
            next_due = None
        if next_due is not None:
            deadline = min(deadline, minus(next_due, CLAIM_AHEAD))
        return deadline

    async def _sleep(self, deadline: datetime) -> None:
        """Sleep until ``deadline`` or a wake-up, whichever comes first (the loop claims ``CLAIM_AHEAD`` ahead, so
        the deadline for an entry due at ``t`` is ``t - CLAIM_AHEAD``)."""
        if not self.stopping:
            await self._wakeup.sleep_until(deadline)


def _plus(moment: datetime, delta: timedelta) -> datetime:
    try:
        return moment + delta
    except OverflowError:  # a clock at the end of time
        return moment
