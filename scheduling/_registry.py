"""This worker's record in the store's worker registry: registered at start, touched on every heartbeat (the tick
that renews the leases, one extra cheap write), marked stopping and stopped on a graceful shutdown; and the
forgetting of workers gone for longer than ``SchedulerSettings.worker_retention``.

Every call here is best effort: a store away for a moment costs a heartbeat, never an attempt. A heartbeat that
finds no record (a peer forgot this worker while it was paused for longer than the retention) registers again.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from stores.base import ScheduledCommandStore
from stores.workers import StoredWorker, StoredWorkerState

from ._store_calls import log_failure
from .clock import Clock
from .options import SchedulerSettings

__all__ = ["WorkerRegistry"]

logger = logging.getLogger("scheduling.service")

#: Forgetting gone workers is housekeeping: at most once per this period per worker (and at start).
FORGET_EVERY = timedelta(hours=1)


class WorkerRegistry:
    """Keeps this worker's registry record in step with its life."""

    def __init__(
        self,
        store: ScheduledCommandStore,
        settings: SchedulerSettings,
        clock: Clock,
        command_types: Callable[[], Sequence[str]],
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._command_types = command_types
        self._forgot_at: datetime | None = None

    def _record(self, now: datetime) -> StoredWorker:
        # ``queues`` is a setting of the fleet features (empty or None: every queue); read defensively.
        queues = getattr(self._settings, "queues", None) or ()
        return StoredWorker(
            worker_id=self._settings.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=tuple(queues),
            command_types=tuple(self._command_types()),
            started_at=now,
            last_seen_at=now,
            lease_duration=self._settings.lease_duration,
        )

    async def register(self) -> None:
        """Register at start (replacing a record of the same id), then forget workers gone for long."""
        now = self._clock.now()
        try:
            await self._store.register_worker(self._record(now))
        except Exception as exc:  # noqa: BLE001 - logged; the heartbeat registers again
            log_failure(exc, "could not register worker %s", self._settings.worker_id, extra=self._extra("register"))
            return
        await self._forget(now)

    async def heartbeat(self) -> None:
        """Record that this worker is alive (registering again if its record was forgotten)."""
        now = self._clock.now()
        if not await self._store.touch_worker(self._settings.worker_id, now=now):
            await self._store.register_worker(self._record(now))
        if self._forgot_at is None or now - self._forgot_at >= FORGET_EVERY:
            await self._forget(now)

    async def mark(self, state: StoredWorkerState) -> None:
        """Record a step of a graceful shutdown: ``stopping`` (draining), then ``stopped``."""
        try:
            await self._store.touch_worker(self._settings.worker_id, now=self._clock.now(), state=state)
        except Exception as exc:  # noqa: BLE001 - logged; the record turns gone after a lease duration anyway
            log_failure(exc, "could not mark worker %s %s", self._settings.worker_id, state, extra=self._extra(state))

    async def _forget(self, now: datetime) -> None:
        self._forgot_at = now
        try:
            forgotten = await self._store.forget_workers(seen_before=now - self._settings.worker_retention)
        except Exception as exc:  # noqa: BLE001 - logged; tried again within FORGET_EVERY
            log_failure(exc, "could not forget gone workers", extra=self._extra("forget_workers"))
            return
        if forgotten:
            logger.info("forgot %d worker(s) gone for over %s", forgotten, self._settings.worker_retention)

    def _extra(self, action: str) -> dict[str, str]:
        return {"action": action, "worker_id": self._settings.worker_id}
