"""``ScheduledCommandService``: the hosted worker that runs due commands.

One loop claims due entries in batches (never more than free concurrency), runs each in its own task through the
mediator, and records the outcome through the store's lease-fenced methods. It claims entries due within
``CLAIM_AHEAD`` and starts each at its due time, so a claim's round trip is not added to their start. Between claims
it sleeps until shortly before the next due time (capped by ``polling_interval``), and is woken early when a sooner
command is scheduled or slots free up. A heartbeat renews the leases of every claimed entry; a periodic recovery
takes over entries whose worker died. Failures of the store are retried with backoff and logged; nothing one command
does stops the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

import pydantic_core
from injector import inject
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_delay, wait_exponential

from mediator import Mediator
from stores.base import ReclaimedEntry, ScheduledCommandStore
from stores.errors import StoreUnavailableError

from . import recurring_ops
from .clock import Clock
from .codec import CommandCodec
from .entries import AttemptOutcome, AttemptRecord, ScheduledCommandEntry
from .errors import UndeliverableCommandError
from .hooks import StartupHooks
from .notifications import (
    ScheduledCommandCompleted,
    ScheduledCommandExpired,
    ScheduledCommandFailed,
    ScheduledCommandNotification,
    ScheduledCommandRetrying,
)
from .observer import SchedulingObservers
from .options import SchedulerSettings
from .retry import next_attempt_at
from .scheduler import CommandScheduler, publish_safely

__all__ = ["ScheduledCommandService"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Errors worth retrying a store call for: the backend is away for a moment.
TRANSIENT_STORE_ERRORS: tuple[type[BaseException], ...] = (StoreUnavailableError, ConnectionError, TimeoutError)

#: Backoff between attempts at a failing store call: 0.05 s, 0.1 s, 0.2 s, ... up to 2 s.
_STORE_RETRY_WAIT = wait_exponential(multiplier=0.05, max=2)

#: The background loop claims entries due up to this far ahead and starts each at its due time, so the claim's own
#: round trip (a few milliseconds, tens under load) is not added to their start. They hold leases meanwhile (and so
#: cannot be cancelled in that window); ``run_until_idle()`` claims only what is due.
CLAIM_AHEAD = timedelta(milliseconds=50)

_MAX_ERROR_MESSAGE = 2_000
_MAX_TRACEBACK = 20_000


class _PermanentFailure(Exception):
    """The attempt failed in a way no retry can fix: dead-letter at once."""


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
        self._mediator = mediator
        self._settings = settings
        self._clock = clock
        self._observers = observers
        self._codec = CommandCodec(mediator)
        self._worker_id = settings.worker_id
        self._running: dict[str, asyncio.Task[None]] = {}
        self._leases: dict[str, str] = {}
        self._cancelled_here: set[str] = set()  # attempts this service cancelled (released, not failed)
        self._not_started: set[str] = set()  # claimed ahead, waiting for their due time
        self._last_claim_full = False
        self._waiting_for_capacity = False
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_wake_at: datetime | None = None
        self._next_recovery_at: datetime | None = None
        self._stopping = False
        self._main: asyncio.Task[None] | None = None
        self._refill_at = max(1, min(settings.batch_size, settings.max_concurrency) // 2)
        # Notifications nobody subscribes to are not even built (a validated model per command adds up).
        self._subscribed: dict[type[ScheduledCommandNotification], bool] = {
            kind: mediator.has_subscribers(kind)
            for kind in (
                ScheduledCommandCompleted,
                ScheduledCommandRetrying,
                ScheduledCommandFailed,
                ScheduledCommandExpired,
            )
        }

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
        return len(self._running) - len(self._not_started)

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
        self._stopping = False
        self._main = asyncio.create_task(self._run(opened=True), name=f"scheduled-commands:{self._worker_id}")

    async def stop(self, *, immediate: bool = False) -> None:
        """Stop claiming, let running commands finish for up to ``shutdown_grace`` (not at all when
        ``immediate``), then cancel the rest and release them back to PENDING without counting an attempt."""
        self._stopping = True
        if immediate:
            # Let tasks spawned by the last claim reach their first await: a task cancelled before it starts never
            # runs, so it could not release its entry.
            await asyncio.sleep(0)
            self._cancel_running()
        self._wake.set()
        main = self._main
        if main is not None and main is not asyncio.current_task():
            await asyncio.gather(main, return_exceptions=True)
            self._main = None

    async def run(self) -> None:
        """Run until ``stop()`` is called or the task is cancelled."""
        if self.is_running:
            raise RuntimeError("the service is already running")
        if not self._settings.enabled:
            logger.info("scheduled command service is disabled (enabled=False)", extra={"action": "disabled"})
            return
        self._stopping = False
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
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()  # bound to this loop: a service may be run again under another one
        self._store.add_wakeup_listener(self._on_wakeup)
        heartbeat = asyncio.create_task(self._heartbeat_loop(), name="scheduled-commands-heartbeat")
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
            await self._claim_loop()
        except asyncio.CancelledError:
            graceful = False
            raise
        finally:
            self._store.remove_wakeup_listener(self._on_wakeup)
            await self._drain(graceful=graceful)
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            logger.info("worker %s stopped", self._worker_id, extra={"action": "stop", "worker_id": self._worker_id})

    async def run_until_idle(self) -> int:
        """Handle everything due at ``clock.now()`` (and expired leases), wait for it to finish, and return how
        many entries were handled. Not while the service runs in the background."""
        if self.is_running:
            raise RuntimeError("run_until_idle() cannot be used while the service is running; stop() it first")
        if not self._settings.enabled:
            return 0
        owns_store = await self._open_store()
        self._stopping = False
        if self._observers:
            self._observers.on_service_started(self.command_types)
        heartbeat = asyncio.create_task(self._heartbeat_loop())
        handled = 0
        try:
            await self._run_startup_hooks()
            handled += await self._recover()
            while True:
                claimed = await self._claim()
                handled += len(claimed)
                if not claimed and not self._running:
                    return handled
                if self._running and (not claimed or len(self._running) >= self._settings.max_concurrency):
                    await asyncio.wait(tuple(self._running.values()), return_when=asyncio.FIRST_COMPLETED)
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            await self._close_store(owns_store)

    async def _run_startup_hooks(self) -> None:
        """The application's ``on_start`` hooks, once per service (declaring recurring schedules is idempotent,
        but ``run_until_idle()`` may be called in a loop)."""
        if self._hooks_ran or not self._startup_hooks:
            return
        await self._startup_hooks.run(self._scheduler)
        self._hooks_ran = True

    # -- the claim loop ---------------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        recovery_every = self._settings.heartbeat_interval
        failures = 0
        while not self._stopping:
            now = self._clock.now()
            if self._next_recovery_at is None or now >= self._next_recovery_at:
                self._next_recovery_at = now + recovery_every
                await self._guarded(self._recover)
            self._wake.clear()
            try:
                await self._claim(ahead=CLAIM_AHEAD)
            except Exception as exc:  # noqa: BLE001 - logged by _log_failure; the service keeps going
                failures += 1
                delay = _store_backoff(failures, cap=self._settings.polling_interval.total_seconds())
                _log_failure(
                    exc,
                    "claiming due commands failed (attempt %d); retrying in %.2fs",
                    failures,
                    delay,
                    extra={"action": "claim_failed", "worker_id": self._worker_id},
                )
                # Real time, not the Clock: this waits for a database to come back, not for a due time.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
                continue
            failures = 0
            if self._stopping:
                break
            free = self._settings.max_concurrency - len(self._running)
            if self._last_claim_full and free > 0:
                await asyncio.sleep(0)  # a full batch: more may be due; let the new tasks start, then claim again
                continue
            if free <= 0:
                self._next_wake_at = None
                self._waiting_for_capacity = True
                try:
                    await self._sleep(now + self._settings.polling_interval)
                finally:
                    self._waiting_for_capacity = False
                continue
            await self._sleep(await self._next_wake_deadline())

    async def _next_wake_deadline(self) -> datetime:
        now = self._clock.now()
        deadline = now + self._settings.polling_interval
        if self._next_recovery_at is not None:
            deadline = min(deadline, self._next_recovery_at)
        try:
            next_due = await self._store.next_due_at()
        except Exception as exc:  # noqa: BLE001 - logged by _log_failure; the service keeps going
            _log_failure(exc, "could not read the next due time", extra={"action": "next_due_failed"})
            next_due = None
        if next_due is not None:
            deadline = min(deadline, _minus(next_due, CLAIM_AHEAD))
        return deadline

    async def _sleep(self, deadline: datetime) -> None:
        """Sleep until ``deadline`` or a wake-up, whichever comes first (the loop claims ``CLAIM_AHEAD`` ahead, so
        the deadline for an entry due at ``t`` is ``t - CLAIM_AHEAD``)."""
        if self._wake.is_set() or self._stopping:
            return
        self._next_wake_at = deadline
        sleeper = asyncio.ensure_future(self._clock.sleep_until(deadline))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()
            self._next_wake_at = None

    def _on_wakeup(self, due: datetime) -> None:
        """Store listener: entries became PENDING, due at ``due`` at the earliest."""
        if self._waiting_for_capacity:  # nothing more can be claimed now; a finishing command wakes the loop
            return
        deadline = self._next_wake_at
        if deadline is not None and _minus(due, CLAIM_AHEAD) >= deadline:
            return
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    async def _claim(self, *, ahead: timedelta = timedelta(0)) -> list[ScheduledCommandEntry]:
        """Claim what is due by ``now + ahead``, up to the free slots, and start it; an entry not yet due waits in
        its task (holding its slot and its lease) until its due time. Never more than the free slots: a worker holds
        no entry it could not run at once, so idle workers share the work and priorities keep their order."""
        free = self._settings.max_concurrency - len(self._running)
        self._last_claim_full = False
        if free <= 0:
            return []
        limit = min(self._settings.batch_size, free)
        now = self._clock.now()
        horizon = _plus(now, ahead)
        claimed = await self._store.claim_due(
            now=horizon,
            limit=limit,
            worker_id=self._worker_id,
            lease_duration=self._settings.lease_duration,
        )
        self._last_claim_full = len(claimed) == limit
        for entry in claimed:
            self._spawn(entry, self._execute(entry))
        return claimed

    def _spawn(self, entry: ScheduledCommandEntry, work: Awaitable[None]) -> None:
        assert entry.lease_token is not None
        task = asyncio.ensure_future(self._guard(entry, work))
        self._running[entry.id] = task
        self._leases[entry.id] = entry.lease_token
        task.add_done_callback(lambda _: self._finished(entry.id))

    async def _guard(self, entry: ScheduledCommandEntry, work: Awaitable[None]) -> None:
        """Log what escapes one command's task (a store that stayed away longer than a lease), with its id."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - logged by _log_failure; the service keeps going
            _log_failure(
                exc,
                "could not record the outcome of %s %s; its lease will expire and it will run again",
                entry.command_type,
                entry.id,
                extra=_extra("record_failed", entry),
                level=logging.ERROR,
            )

    def _finished(self, entry_id: str) -> None:
        self._running.pop(entry_id, None)
        self._leases.pop(entry_id, None)
        self._cancelled_here.discard(entry_id)
        self._not_started.discard(entry_id)
        # Only a loop waiting for free slots needs waking; otherwise it sleeps until the next due time.
        if self._waiting_for_capacity and (
            self._settings.max_concurrency - len(self._running) >= self._refill_at or not self._running
        ):
            self._wake.set()

    async def _guarded(self, step: Callable[[], Awaitable[Any]]) -> None:
        try:
            await step()
        except Exception as exc:  # noqa: BLE001 - logged by _log_failure; the service keeps going
            _log_failure(exc, "%s failed; continuing", step.__name__.lstrip("_"), extra={"action": "step_failed"})

    # -- running one entry ------------------------------------------------------------------------------------

    async def _execute(self, entry: ScheduledCommandEntry) -> None:
        if entry.scheduled_for > self._clock.now():  # claimed ahead
            await self._wait_until_due(entry)
        await self._attempt(entry)

    async def _wait_until_due(self, entry: ScheduledCommandEntry) -> None:
        """Until the entry claimed ahead is due (its slot and lease held). Cancelled meanwhile (stopping, or the
        lease was lost): the entry is given back, no attempt counted."""
        self._not_started.add(entry.id)
        try:
            await self._clock.sleep_until(entry.scheduled_for)
        except asyncio.CancelledError:
            if entry.id in self._cancelled_here:
                await self._release(entry)
            raise
        finally:
            self._not_started.discard(entry.id)

    async def _attempt(self, entry: ScheduledCommandEntry) -> None:
        started = self._clock.now()
        if entry.recurring_name is not None:  # before the expiry check: a skipped occurrence still advances
            await self._advance_recurring(entry, started)
        if entry.expires_at is not None and entry.attempt_count == 0 and started >= entry.expires_at:
            await self._expire(entry, started)
            return
        if self._observers:
            self._observers.on_started(entry, started)
        outcome: AttemptOutcome = "failed"
        try:
            command = self._codec.decode(entry.command_type, entry.payload)
        except UndeliverableCommandError as exc:
            await self._record_failure(entry, started, exc, "failed", permanent=True)
            return
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("running %s %s", entry.command_type, entry.id, extra=_extra("run", entry))
        try:
            if entry.timeout_seconds is not None:
                deadline = asyncio.timeout(entry.timeout_seconds)
                try:
                    async with deadline:
                        result = await self._mediator.send(command)
                except TimeoutError as exc:
                    if not deadline.expired():  # the handler's own TimeoutError (a partner's): an ordinary failure
                        raise
                    outcome = "timed_out"
                    raise TimeoutError(f"attempt exceeded its timeout of {entry.timeout_seconds:g}s") from exc
            else:
                result = await self._mediator.send(command)
        except asyncio.CancelledError as exc:
            if entry.id in self._cancelled_here:  # stopping, or the lease was lost: give the entry back
                await self._release(entry)
                raise
            task = asyncio.current_task()
            if task is not None:  # the handler cancelled itself: that is its failure, not a request to us
                while task.cancelling():
                    task.uncancel()
            await self._record_failure(entry, started, exc, "failed")
            return
        except BaseException as exc:  # noqa: BLE001 - one command must never bring the worker down
            await self._record_failure(entry, started, exc, outcome)
            return
        try:
            result_payload = None if result is None else pydantic_core.to_json(result).decode()
        except Exception as exc:  # noqa: BLE001 - an unserializable result is the handler's bug, not ours
            failure = _PermanentFailure(f"the handler's result of type {type(result).__qualname__} is not JSON: {exc}")
            await self._record_failure(entry, started, failure, "failed", permanent=True)
            return
        await self._complete(entry, started, result_payload)

    async def _advance_recurring(self, entry: ScheduledCommandEntry, now: datetime) -> None:
        """Create the next occurrence of the entry's schedule (idempotent; a failure is logged, never fatal: the
        application's next declaration of the schedule recreates it)."""
        try:
            await self._store_call(
                recurring_ops.advance, self._store, entry, now, default_max_retries=self._settings.max_retries
            )
        except Exception as exc:  # noqa: BLE001 - logged by _log_failure; the service keeps going
            _log_failure(
                exc,
                "could not create the next occurrence of recurring schedule %s",
                entry.recurring_name,
                extra=_extra("recurring_failed", entry),
            )

    async def _complete(self, entry: ScheduledCommandEntry, started: datetime, result_payload: str | None) -> None:
        finished = self._clock.now()
        attempt = AttemptRecord(
            attempt=entry.attempt_count + 1,
            worker_id=self._worker_id,
            started_at=started,
            finished_at=finished,
            outcome="completed",
        )
        assert entry.lease_token is not None
        if not await self._store_call(
            self._store.complete, entry.id, entry.lease_token, result_payload=result_payload, attempt=attempt
        ):
            self._lease_lost(entry, "complete")
            return
        if self._observers:
            self._observers.on_finished(entry, "completed", started, finished)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("completed %s %s", entry.command_type, entry.id, extra=_extra("complete", entry))
        if self._subscribed[ScheduledCommandCompleted]:
            await publish_safely(self._mediator, ScheduledCommandCompleted.of(entry, finished, result_payload))

    async def _record_failure(
        self,
        entry: ScheduledCommandEntry,
        started: datetime,
        exc: BaseException,
        outcome: AttemptOutcome,
        *,
        permanent: bool = False,
        worker_id: str | None = None,
    ) -> None:
        """Record a failed attempt, then retry later or dead-letter, and announce it."""
        finished = self._clock.now()
        error_message = _error_message(exc)
        attempt_number = entry.attempt_count + 1
        attempt = AttemptRecord(
            attempt=attempt_number,
            worker_id=worker_id or self._worker_id,
            started_at=started,
            finished_at=finished,
            outcome=outcome,
            error=_error_text(exc, error_message),
        )
        assert entry.lease_token is not None
        if not permanent and entry.retry_count < entry.max_retries:
            due = next_attempt_at(entry.retry_count + 1, finished, self._settings)
            if not await self._store_call(
                self._store.retry_later,
                entry.id,
                entry.lease_token,
                due=due,
                error_message=error_message,
                attempt=attempt,
            ):
                self._lease_lost(entry, "retry")
                return
            if self._observers:
                self._observers.on_finished(entry, "retrying", started, finished)
            logger.warning(
                "attempt %d of %s %s failed (%s); retrying at %s",
                attempt_number,
                entry.command_type,
                entry.id,
                error_message,
                due.isoformat(),
                extra=_extra("retry", entry),
            )
            self._on_wakeup(due)
            if self._subscribed[ScheduledCommandRetrying]:
                await publish_safely(
                    self._mediator, ScheduledCommandRetrying.of(entry, finished, attempt_number, error_message, due)
                )
            return
        if not await self._store_call(
            self._store.dead_letter, entry.id, entry.lease_token, error_message=error_message, attempt=attempt
        ):
            self._lease_lost(entry, "dead-letter")
            return
        if self._observers:
            self._observers.on_finished(entry, "failed", started, finished)
        logger.error(
            "%s %s failed after %d attempt(s) and is dead-lettered: %s",
            entry.command_type,
            entry.id,
            attempt_number,
            error_message,
            extra=_extra("dead_letter", entry),
        )
        if self._subscribed[ScheduledCommandFailed]:
            await publish_safely(
                self._mediator, ScheduledCommandFailed.of(entry, finished, attempt_number, error_message)
            )

    async def _expire(self, entry: ScheduledCommandEntry, now: datetime) -> None:
        assert entry.lease_token is not None
        if not await self._store_call(self._store.expire, entry.id, entry.lease_token, now=now):
            self._lease_lost(entry, "expire")
            return
        if self._observers:
            self._observers.on_finished(entry, "expired", now, now)
        logger.warning(
            "%s %s expired at %s before it could start",
            entry.command_type,
            entry.id,
            entry.expires_at.isoformat() if entry.expires_at else "?",
            extra=_extra("expire", entry),
        )
        if self._subscribed[ScheduledCommandExpired]:
            await publish_safely(self._mediator, ScheduledCommandExpired.of(entry, now))

    async def _release(self, entry: ScheduledCommandEntry) -> None:
        assert entry.lease_token is not None
        try:
            released = await self._store.release(entry.id, entry.lease_token)
        except Exception as exc:  # noqa: BLE001 - logged by _log_failure; the service keeps going
            _log_failure(exc, "could not release %s; its lease will expire", entry.id, extra=_extra("release", entry))
            return
        if released:
            logger.info("released %s %s unfinished", entry.command_type, entry.id, extra=_extra("release", entry))

    def _lease_lost(self, entry: ScheduledCommandEntry, step: str) -> None:
        logger.warning(
            "could not %s %s %s: this worker no longer holds its lease (another worker took it over)",
            step,
            entry.command_type,
            entry.id,
            extra=_extra("lease_lost", entry),
        )

    # -- leases -----------------------------------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        interval = self._settings.heartbeat_interval
        while True:
            await self._clock.sleep_until(self._clock.now() + interval)
            await self._guarded(self._renew_leases)

    async def _renew_leases(self) -> None:
        leases = list(self._leases.items())
        if not leases:
            return
        renewed = await self._store.renew_leases(leases, until=self._clock.now() + self._settings.lease_duration)
        for entry_id, _ in leases:
            task = self._running.get(entry_id)
            if entry_id not in renewed and task is not None and not task.done():
                logger.warning(
                    "lease on %s was lost; cancelling its attempt here (another worker may run it)",
                    entry_id,
                    extra={"action": "lease_lost", "command_id": entry_id, "worker_id": self._worker_id},
                )
                self._cancel(entry_id)

    async def _recover(self) -> int:
        """Take over entries whose worker died; each counts a lost (failed) attempt."""
        reclaimed: list[ReclaimedEntry] = await self._store.reclaim_expired_leases(
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
                extra=_extra("recover", entry),
            )
            lost = WorkerLostError(previous_owner, previous_expiry)
            self._spawn(
                entry,
                self._record_failure(
                    entry, entry.started_at or self._clock.now(), lost, "lost", worker_id=previous_owner or "unknown"
                ),
            )
        return len(reclaimed)

    # -- shutdown ---------------------------------------------------------------------------------------------

    def _cancel(self, entry_id: str) -> None:
        """Cancel a running attempt on the service's behalf (stop, lost lease): it is released, not failed."""
        task = self._running.get(entry_id)
        if task is not None and not task.done():
            self._cancelled_here.add(entry_id)
            task.cancel()

    def _cancel_running(self) -> None:
        for entry_id in tuple(self._running):
            self._cancel(entry_id)

    async def _drain(self, *, graceful: bool) -> None:
        tasks = tuple(self._running.values())
        if not tasks:
            return
        # Let tasks spawned by the last claim reach their first await: a task cancelled before it starts never runs,
        # so it could not release its entry.
        await asyncio.sleep(0)
        for entry_id in tuple(self._not_started):  # claimed ahead, not started: released at once
            self._cancel(entry_id)
        grace = self._settings.shutdown_grace.total_seconds() if graceful else 0
        pending: set[asyncio.Task[None]] = set(tasks)
        if grace > 0:
            logger.info("waiting up to %gs for %d running command(s)", grace, len(tasks), extra={"action": "drain"})
            _, pending = await asyncio.wait(tasks, timeout=grace)
        for entry_id, task in tuple(self._running.items()):
            if task in pending:
                self._cancel(entry_id)
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- store calls ------------------------------------------------------------------------------------------

    async def _store_call(self, method: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Call a store method, retrying transient errors with backoff for up to one lease duration."""
        try:  # the common case, without building a retry controller (it costs more than a memory store call)
            return await method(*args, **kwargs)
        except TRANSIENT_STORE_ERRORS as exc:
            _log_store_failure(exc)
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TRANSIENT_STORE_ERRORS),
            wait=_STORE_RETRY_WAIT,
            stop=stop_after_delay(self._settings.lease_duration.total_seconds()),
            before_sleep=_log_store_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await method(*args, **kwargs)
        raise AssertionError("unreachable")  # pragma: no cover


class WorkerLostError(Exception):
    """The worker running an attempt stopped renewing its lease (it crashed, hung or lost the store)."""

    def __init__(self, worker_id: str | None, lease_expires_at: datetime | None) -> None:
        self.worker_id = worker_id
        self.lease_expires_at = lease_expires_at
        super().__init__(worker_id, lease_expires_at)

    def __str__(self) -> str:
        return f"worker {self.worker_id or 'unknown'} stopped renewing its lease; the attempt is lost"


def _plus(moment: datetime, delta: timedelta) -> datetime:
    try:
        return moment + delta
    except OverflowError:  # a clock at the end of time
        return moment


def _minus(moment: datetime, delta: timedelta) -> datetime:
    try:
        return moment - delta
    except OverflowError:
        return moment


def _store_backoff(failures: int, *, cap: float) -> float:
    """Seconds to wait after ``failures`` consecutive failed claims (tenacity's exponential wait, capped)."""
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = failures
    return min(_STORE_RETRY_WAIT(state), cap)


def _extra(action: str, entry: ScheduledCommandEntry) -> dict[str, Any]:
    return {"action": action, "command_id": entry.id, "command_type": entry.command_type}


def _error_message(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - an exception whose __str__ fails is still a failure to record
        text = "<the exception could not be converted to text>"
    message = _storable(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
    return message if len(message) <= _MAX_ERROR_MESSAGE else message[: _MAX_ERROR_MESSAGE - 1] + "…"


def _storable(text: str) -> str:
    """Text every store can hold: NUL escaped (PostgreSQL refuses it), lone surrogates escaped (not encodable)."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _error_text(exc: BaseException, message: str) -> str:
    try:
        trace = _storable("".join(traceback.format_exception(exc)))
    except Exception:  # noqa: BLE001 - a frame whose repr fails must not lose the failure
        trace = "<the traceback could not be formatted>"
    if len(trace) > _MAX_TRACEBACK:
        trace = "…" + trace[-_MAX_TRACEBACK:]
    return f"{message}\n\n{trace}"


def _log_failure(
    exc: BaseException, message: str, *args: object, extra: dict[str, Any], level: int = logging.WARNING
) -> None:
    """Log a failure the service survives. The store being away for a moment is one line an operator can read, at
    ``level`` (the traceback, with the driver's SQL, only at DEBUG); anything else is an ERROR with its traceback,
    since it is a bug to report."""
    if isinstance(exc, TRANSIENT_STORE_ERRORS):
        logger.log(level, message + ": %s", *args, exc, extra=extra)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("traceback of the failure above", exc_info=exc, extra=extra)
    else:
        logger.error(message, *args, exc_info=exc, extra=extra)


def _log_store_failure(exc: BaseException) -> None:
    logger.warning("store call failed, retrying with backoff: %s", exc, extra={"action": "store_retry"})


def _log_store_retry(state: Any) -> None:
    outcome = state.outcome
    logger.warning(
        "store call failed (attempt %d), retrying: %s",
        state.attempt_number,
        outcome.exception() if outcome is not None else "?",
        extra={"action": "store_retry"},
    )
