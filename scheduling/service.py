"""``ScheduledCommandService``: the hosted worker that runs due commands.

The service is the public face of three parts, each in a module of its own:

- the claim loop (:mod:`scheduling._claim_loop`, woken through :mod:`scheduling._wakeup`): claims due entries in
  batches (never more than free concurrency) and sleeps until the next due time;
- the attempts (:mod:`scheduling._attempt`): run each entry through the mediator in its own task and record its
  outcome through the store's lease-fenced methods, every outcome along one reporting path;
- the leases (:mod:`scheduling._leases`): the claimed entries' tasks and leases, the heartbeat renewing them,
  recovery of entries whose worker died, and draining at shutdown;
- retention (:mod:`scheduling.retention`): deleting finished entries once they are older than the settings'
  ``retention`` ages, in a background task of its own.

Failures of the store are retried with backoff and logged (:mod:`scheduling._store_calls`); nothing one command does
stops the loop. Every part logs to the ``scheduling.service`` logger.
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Self

from injector import inject

from mediator import Mediator
from stores.base import ScheduledCommandStore

from . import _dependants_cancelled
from ._attempt import Attempts
from ._claim_loop import CLAIM_AHEAD, ClaimLoop
from ._hooks import StartupHooks
from ._leases import Leases
from ._registry import WorkerRegistry
from ._wakeup import Wakeup
from .clock import Clock
from .codec import CommandCodec
from .observer import SchedulingObservers
from .options import SchedulerSettings
from .retention import Purger
from .scheduler import CommandScheduler

__all__ = ["CLAIM_AHEAD", "ScheduledCommandService"]

logger = logging.getLogger(__name__)


class ScheduledCommandService:
    """Runs due scheduled commands through the mediator.

    ``async with service:`` starts it in the background and stops it gracefully on exit; ``await service.run()``
    runs it in the current task until ``stop()`` or cancellation; ``await service.run_until_idle()`` runs
    everything due at ``clock.now()`` and returns how many entries it handled (for tests and scripts).

    .. versionadded:: 0.1
    """

    @inject
    def __init__(
        self,
        store: ScheduledCommandStore,
        mediator: Mediator,
        settings: SchedulerSettings,
        clock: Clock,
        observers: SchedulingObservers,
        scheduler: CommandScheduler,
        startup_hooks: StartupHooks,
    ) -> None:
        self._store = store
        self._scheduler = scheduler
        self._startup_hooks = startup_hooks
        self._hooks_ran = False
        self._owns_store = False
        self._settings = settings
        self._observers = observers
        self._codec = CommandCodec(mediator)
        self._worker_id = settings.worker_id
        self._main: asyncio.Task[None] | None = None
        self._wakeup = Wakeup(clock, ahead=CLAIM_AHEAD)
        self._leases = Leases(store, settings, clock, self._wakeup)
        self._attempts = Attempts(store, mediator, self._codec, settings, clock, observers, self._leases, self._wakeup)
        self._registry = WorkerRegistry(store, settings, clock, lambda: self.command_types)
        self._claims = ClaimLoop(
            store,
            settings,
            clock,
            self._leases,
            self._wakeup,
            execute=self._attempts.execute,
            start_batch=self._attempts.start_batch,
            recover=self._recover,
            command_types=self._codec.type_names,
        )
        retention = settings.retention
        self._purger = (
            Purger(store, retention, clock, observers, worker_id=settings.worker_id)
            if retention is not None and retention.ages
            else None
        )

    # -- properties -------------------------------------------------------------------------------------------

    @property
    def worker_id(self) -> str:
        return self._worker_id

    @property
    def command_types(self) -> list[str]:
        """Every command type this worker can run."""
        return self._codec.type_names

    @property
    def running(self) -> int:
        """Commands running right now (not counting those claimed ahead and waiting for their due time)."""
        return len(self._leases.running) - len(self._leases.not_started) - len(self._leases.recording)

    @property
    def is_running(self) -> bool:
        return self._main is not None and not self._main.done()

    # -- lifecycle --------------------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start the service in a background task (nothing happens when ``settings.enabled`` is False)."""
        if self.is_running:
            return
        if not self._settings.enabled:
            logger.info("scheduled command service is disabled", extra={"action": "disabled"})
            return
        self._owns_store = await self._open_store()
        try:
            await self._run_startup_hooks()
        except BaseException:
            await self._close_store(self._owns_store)
            raise
        self._claims.stopping = False
        self._main = asyncio.create_task(self._run(opened=True), name=f"scheduled-commands:{self._worker_id}")

    async def stop(self, *, immediate: bool = False) -> None:
        """Stop claiming, let running commands finish for up to ``shutdown_grace`` (not at all when
        ``immediate``), then cancel the rest and release them back to PENDING without counting an attempt."""
        self._claims.stopping = True
        if immediate:
            # Let tasks spawned by the last claim reach their first await: a task cancelled before it starts never
            # runs, so it could not release its entry.
            await asyncio.sleep(0)
            self._leases.cancel_all()
        self._claims.stop()
        main = self._main
        if main is not None and main is not asyncio.current_task():
            await asyncio.gather(main, return_exceptions=True)
            self._main = None
        await _dependants_cancelled.settle()

    async def run(self) -> None:
        """Run until ``stop()`` is called or the task is cancelled."""
        if self.is_running:
            raise RuntimeError("the service is already running")
        if not self._settings.enabled:
            logger.info("scheduled command service is disabled (enabled=False)", extra={"action": "disabled"})
            return
        self._claims.stopping = False
        self._main = asyncio.current_task()
        try:
            await self._run()
        finally:
            self._main = None

    async def _open_store(self) -> bool:
        """Open the store (failing fast); return whether this service opened it, and so closes it when it stops."""
        owns = not self._store.opened_explicitly
        await self._store.open()
        return owns

    async def _close_store(self, owns: bool) -> None:
        if owns:
            await self._store.close()

    async def _run(self, *, opened: bool = False) -> None:
        if not opened:
            self._owns_store = await self._open_store()
        try:
            if not opened:
                await self._run_startup_hooks()
            await self._serve()
        finally:
            await self._close_store(self._owns_store)

    async def _serve(self) -> None:
        self._wakeup.bind()
        self._store.add_wakeup_listener(self._wakeup.notify)
        await self._registry.register()
        heartbeat = asyncio.create_task(
            self._leases.heartbeat_loop(also=self._registry.heartbeat), name="scheduled-commands-heartbeat"
        )
        purger = None
        if self._purger is not None:
            purger = asyncio.create_task(self._purger.run(), name="scheduled-commands-retention")
        logger.info(
            "worker %s started on %s (concurrency %d, batch %d, polling %ss); command types: %s",
            self._worker_id,
            self._store.description,
            self._settings.max_concurrency,
            self._settings.batch_size,
            self._settings.polling_interval.total_seconds(),
            ", ".join(self.command_types) or "(none)",
            extra={"action": "start", "worker_id": self._worker_id},
        )
        if self._observers:  # per-type counters exist at zero before the first event (increase() sees it)
            self._observers.on_service_started(self.command_types)
        graceful = True
        try:
            await self._claims.run()
        except asyncio.CancelledError:
            graceful = False
            raise
        finally:
            self._store.remove_wakeup_listener(self._wakeup.notify)
            if purger is not None:  # a round stops at once (a batch's transaction rolls back), not after the drain
                purger.cancel()
            if graceful:
                await self._registry.mark("stopping")
            await self._leases.drain(graceful=graceful)
            heartbeat.cancel()
            await asyncio.gather(heartbeat, *([purger] if purger is not None else []), return_exceptions=True)
            await self._registry.mark("stopped")
            logger.info("worker %s stopped", self._worker_id, extra={"action": "stop", "worker_id": self._worker_id})

    async def run_until_idle(self) -> int:
        """Handle everything due at ``clock.now()`` (and expired leases), wait for it to finish, and return how
        many entries were handled. Not while the service runs in the background."""
        if self.is_running:
            raise RuntimeError("run_until_idle() cannot be used while the service is running; stop() it first")
        if not self._settings.enabled:
            return 0
        owns_store = await self._open_store()
        self._claims.stopping = False
        if self._observers:
            self._observers.on_service_started(self.command_types)
        heartbeat = asyncio.create_task(self._leases.heartbeat_loop())
        running = self._leases.running
        handled = 0
        try:
            await self._run_startup_hooks()
            handled += await self._recover()
            while True:
                # An attempt that ends while a claim is in flight may free its lock or add the next occurrence of
                # its schedule after the claim read the store: idle only when a claim that began with nothing
                # running finds nothing.
                busy = bool(running)
                claimed = await self._claims.claim()
                handled += len(claimed)
                if not claimed and not running:
                    if not busy:
                        return handled
                    continue
                if running and (not claimed or len(running) >= self._settings.max_concurrency):
                    await asyncio.wait(tuple(running.values()), return_when=asyncio.FIRST_COMPLETED)
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            await _dependants_cancelled.settle()  # dependants its outcomes cancelled are announced before it returns
            await self._close_store(owns_store)

    async def _run_startup_hooks(self) -> None:
        """The application's ``on_start`` hooks, once per service (declaring recurring schedules is idempotent,
        but ``run_until_idle()`` may be called in a loop)."""
        if self._hooks_ran or not self._startup_hooks:
            return
        await self._startup_hooks.run(self._scheduler)
        self._hooks_ran = True

    async def _recover(self) -> int:
        """Take over entries whose worker died; each counts a lost (failed) attempt."""
        return await self._leases.recover(self._attempts.record_lost)
