"""What a worker holds: the task and lease of every claimed entry, the heartbeat that renews the leases, recovery
of entries whose worker died, and cancelling and draining at shutdown.

A cancel made here (stopping, a lost lease) is the service's, not the handler's: the attempt gives its entry back
(:meth:`Leases.release`) instead of recording a failure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from stores.base import ScheduledCommandStore

from ._cancels import CancelRequests
from ._store_calls import entry_extra, log_failure, run_guarded
from ._wakeup import Wakeup
from .clock import Clock
from .entries import ScheduledCommandEntry
from .options import SchedulerSettings

__all__ = ["Leases", "WorkerLostError"]

logger = logging.getLogger("scheduling.service")

#: Records a lost attempt of an entry taken over from a dead worker.
RecordLost = Callable[[ScheduledCommandEntry, "WorkerLostError"], Awaitable[None]]


class WorkerLostError(Exception):
    """The worker running an attempt stopped renewing its lease (it crashed, hung or lost the store)."""

    def __init__(self, worker_id: str | None, lease_expires_at: datetime | None) -> None:
        self.worker_id = worker_id
        self.lease_expires_at = lease_expires_at
        super().__init__(worker_id, lease_expires_at)

    def __str__(self) -> str:
        return f"worker {self.worker_id or 'unknown'} stopped renewing its lease; the attempt is lost"


class Leases:
    """The entries this worker has claimed: one task and one lease token each, until the task ends."""

    def __init__(
        self,
        store: ScheduledCommandStore,
        settings: SchedulerSettings,
        clock: Clock,
        wakeup: Wakeup,
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._wakeup = wakeup
        self._worker_id = settings.worker_id
        self.running: dict[str, asyncio.Task[None]] = {}
        self._tokens: dict[str, str] = {}
        self.cancelled_here: set[str] = set()  # attempts this service cancelled (released, not failed)
        self.not_started: set[str] = set()  # claimed ahead, waiting for their due time
        #: Attempts whose handler has returned and whose outcome is being written: the entry keeps its task and its
        #: lease (renewed, waited for at shutdown) but no longer its slot, so the next claim is not held back by the
        #: outcome's round trip. At most ``max_concurrency`` of them count apart from the slots (``free``).
        self.recording: set[str] = set()
        #: Attempts whose outcome is written and whose task only publishes it (notification handlers: application
        #: code, so they take a slot again, as the handler did); their leases are no longer renewed or fenced.
        self.settled: set[str] = set()
        #: Cancel requests for the entries held here, listened for from the claim until the slot is freed.
        self.cancels = CancelRequests(store)
        self._refill_at = max(1, min(settings.batch_size, settings.max_concurrency) // 2)

    @property
    def free(self) -> int:
        """Slots free for claiming: ``max_concurrency`` less the attempts not yet at their outcome, and never more
        than ``2 * max_concurrency`` entries held in all (so a crash repeats at most that many)."""
        held = len(self.running)
        limit = self._settings.max_concurrency
        return min(limit - (held - len(self.recording)), 2 * limit - held)

    def recording_outcome(self, entry_id: str) -> None:
        """The attempt of ``entry_id`` has its outcome and is writing it: its slot is free for the next claim while
        its task keeps the lease until the write is done (the claim and the outcome's round trip overlap)."""
        if entry_id in self.running and entry_id not in self.recording:
            self.recording.add(entry_id)
            self._wake_if_refilled()

    def outcome_written(self, entry_id: str) -> None:
        """The outcome of ``entry_id`` is written; what its task still does (publishing the notification) takes a
        slot again, so application code never runs beyond ``max_concurrency`` at once."""
        if entry_id in self.running:
            self.recording.discard(entry_id)
            self.settled.add(entry_id)

    # -- tasks ------------------------------------------------------------------------------------------------

    def spawn(self, entry: ScheduledCommandEntry, work: Awaitable[None]) -> None:
        """Run ``work`` for ``entry`` in a task of its own, holding its slot and lease until it ends."""
        assert entry.lease_token is not None
        task = asyncio.ensure_future(self._guard(entry, work))
        self.running[entry.id] = task
        self._tokens[entry.id] = entry.lease_token
        self.cancels.hold(entry)
        task.add_done_callback(lambda _: self._finished(entry.id, locked=entry.lock is not None))

    async def _guard(self, entry: ScheduledCommandEntry, work: Awaitable[None]) -> None:
        """Log what escapes one command's task (a store that stayed away longer than a lease), with its id."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - logged by log_failure; the service keeps going
            log_failure(
                exc,
                "could not record the outcome of %s %s; its lease will expire and it will run again",
                entry.command_type,
                entry.id,
                extra=entry_extra("record_failed", entry),
                level=logging.ERROR,
            )

    def _finished(self, entry_id: str, *, locked: bool = False) -> None:
        self.running.pop(entry_id, None)
        self._tokens.pop(entry_id, None)
        self.cancels.release(entry_id)
        self.cancelled_here.discard(entry_id)
        self.not_started.discard(entry_id)
        self.recording.discard(entry_id)
        self.settled.discard(entry_id)
        # One that may claim the next entry of the lock this entry just gave up (its outcome is recorded).
        if locked:
            self._wakeup.set()
        else:
            self._wake_if_refilled()

    def _wake_if_refilled(self) -> None:
        # Only a loop waiting for free slots needs waking; otherwise it sleeps until the next due time.
        if not self._wakeup.waiting_for_capacity:
            return
        free = self.free
        if free > 0 and (free >= self._refill_at or len(self.running) == len(self.recording)):
            self._wakeup.set()

    def cancel(self, entry_id: str) -> None:
        """Cancel a running attempt on the service's behalf (stop, lost lease): it is released, not failed."""
        task = self.running.get(entry_id)
        if task is not None and not task.done():
            self.cancelled_here.add(entry_id)
            task.cancel()

    def cancel_all(self) -> None:
        for entry_id in tuple(self.running):
            self.cancel(entry_id)

    async def release(self, entry: ScheduledCommandEntry) -> None:
        """Give an entry back to PENDING without counting an attempt."""
        assert entry.lease_token is not None
        try:
            released = await self._store.release(entry.id, entry.lease_token)
        except Exception as exc:  # noqa: BLE001 - logged by log_failure; the service keeps going
            extra = entry_extra("release", entry)
            log_failure(exc, "could not release %s; its lease will expire", entry.id, extra=extra)
            return
        if released:
            logger.info("released %s %s unfinished", entry.command_type, entry.id, extra=entry_extra("release", entry))

    # -- heartbeat and recovery -------------------------------------------------------------------------------

    async def heartbeat_loop(self, also: Callable[[], Awaitable[None]] | None = None) -> None:
        """Renew the leases every heartbeat interval; ``also`` runs on the same tick (the worker registry's
        heartbeat), after the renewal and guarded apart from it."""
        interval = self._settings.heartbeat_interval
        while True:
            await self._clock.sleep_until(self._clock.now() + interval)
            await run_guarded(self.renew_leases)
            if also is not None:
                await run_guarded(also)

    async def renew_leases(self) -> None:
        leases = list(self._tokens.items())
        if not leases:
            return
        renewed = await self._store.renew_leases(leases, until=self._clock.now() + self._settings.lease_duration)
        for entry_id, _ in leases:
            task = self.running.get(entry_id)
            # An entry whose outcome is being written is left alone: the write is fenced by its lease token and tells
            # by itself whether the lease was still held; its commit may also be why the renewal missed it, and
            # cancelling the task then would drop its notification (as for one whose outcome is written).
            ending = entry_id in self.recording or entry_id in self.settled
            if entry_id not in renewed and task is not None and not task.done() and not ending:
                logger.warning(
                    "lease on %s was lost; cancelling its attempt here (another worker may run it)",
                    entry_id,
                    extra={"action": "lease_lost", "command_id": entry_id, "worker_id": self._worker_id},
                )
                self.cancel(entry_id)

    async def recover(self, record_lost: RecordLost) -> int:
        """Take over entries whose worker died; each counts a lost (failed) attempt, recorded by ``record_lost``."""
        reclaimed = await self._store.reclaim_expired_leases(
            now=self._clock.now(),
            limit=self._settings.batch_size,
            worker_id=self._worker_id,
            lease_duration=self._settings.lease_duration,
        )
        for entry, previous_owner, previous_expiry in reclaimed:
            logger.warning(
                "%s %s was abandoned by worker %s (lease expired); recording a lost attempt",
                entry.command_type,
                entry.id,
                previous_owner,
                extra=entry_extra("recover", entry),
            )
            self.spawn(entry, record_lost(entry, WorkerLostError(previous_owner, previous_expiry)))
        return len(reclaimed)

    # -- shutdown ---------------------------------------------------------------------------------------------

    async def drain(self, *, graceful: bool) -> None:
        """Let running attempts finish for up to ``shutdown_grace`` (none unless ``graceful``), then cancel the
        rest; entries claimed ahead and not started are given back at once."""
        tasks = tuple(self.running.values())
        if not tasks:
            return
        # Let tasks spawned by the last claim reach their first await: a task cancelled before it starts never runs,
        # so it could not release its entry.
        await asyncio.sleep(0)
        for entry_id in tuple(self.not_started):
            self.cancel(entry_id)
        grace = self._settings.shutdown_grace.total_seconds() if graceful else 0
        pending: set[asyncio.Task[None]] = set(tasks)
        if grace > 0:
            logger.info("waiting up to %gs for %d running command(s)", grace, len(tasks), extra={"action": "drain"})
            _, pending = await asyncio.wait(tasks, timeout=grace)
        for entry_id, task in tuple(self.running.items()):
            if task in pending:
                self.cancel(entry_id)
        await asyncio.gather(*tasks, return_exceptions=True)
