"""One attempt at a claimed entry: run its command through the mediator and record the outcome.

Every outcome (completed, retrying, dead-lettered, expired) is reported the same way, by :meth:`Attempts._report`:
the store's lease-fenced write, then (only if this worker still held the lease) the observers, one log record and
the lifecycle notification. What differs between outcomes is data (:class:`_Outcome`), not code.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import pydantic_core

from mediator import Command, Mediator
from stores.base import ScheduledCommandStore

from . import _tracing, context, recurring_ops
from ._cancels import CANCELLED
from ._error_text import error_message, error_text
from ._leases import Leases, WorkerLostError
from ._publish import publish_safely
from ._store_calls import entry_extra, log_failure, store_call
from ._wakeup import Wakeup
from .clock import Clock
from .codec import CommandCodec
from .context import CommandContext
from .entries import AttemptOutcome, AttemptRecord, ScheduledCommandEntry
from .errors import UndeliverableCommandError
from .notifications import (
    ScheduledCommandCancelled,
    ScheduledCommandCompleted,
    ScheduledCommandExpired,
    ScheduledCommandFailed,
    ScheduledCommandNotification,
    ScheduledCommandRetrying,
)
from .observer import FinishedOutcome, SchedulingObservers
from .options import SchedulerSettings
from .retry import next_attempt_at

__all__ = ["Attempts"]

logger = logging.getLogger("scheduling.service")

T = TypeVar("T")


class _PermanentFailure(Exception):
    """The attempt failed in a way no retry can fix: dead-letter at once."""


@dataclass(frozen=True, slots=True)
class _Outcome:
    """How one kind of outcome is reported."""

    step: str  #: what could not be done when the lease was lost ("could not {step} ...")
    observed_as: FinishedOutcome | None  #: None: observed as cancelled (``on_cancelled``)
    action: str  #: the log record's ``action`` field
    level: int
    message: str
    notification: type[ScheduledCommandNotification]


_COMPLETED = _Outcome("complete", "completed", "complete", logging.DEBUG, "completed %s %s", ScheduledCommandCompleted)
_RETRYING = _Outcome(
    "retry",
    "retrying",
    "retry",
    logging.WARNING,
    "attempt %d of %s %s failed (%s); retrying at %s",
    ScheduledCommandRetrying,
)
_DEAD_LETTERED = _Outcome(
    "dead-letter",
    "failed",
    "dead_letter",
    logging.ERROR,
    "%s %s failed after %d attempt(s) and is dead-lettered: %s",
    ScheduledCommandFailed,
)
_EXPIRED = _Outcome(
    "expire", "expired", "expire", logging.WARNING, "%s %s expired at %s before it could start", ScheduledCommandExpired
)
_CANCELLED = _Outcome(
    "cancel", None, "cancel_running", logging.INFO, "cancelled %s %s while it ran", ScheduledCommandCancelled
)
_NOTIFICATIONS = tuple(o.notification for o in (_COMPLETED, _RETRYING, _DEAD_LETTERED, _EXPIRED, _CANCELLED))


class Attempts:
    """Runs the attempts of the entries a worker claimed and records their outcomes."""

    def __init__(
        self,
        store: ScheduledCommandStore,
        mediator: Mediator,
        codec: CommandCodec,
        settings: SchedulerSettings,
        clock: Clock,
        observers: SchedulingObservers,
        leases: Leases,
        wakeup: Wakeup,
    ) -> None:
        self._store = store
        self._mediator = mediator
        self._codec = codec
        self._settings = settings
        self._clock = clock
        self._observers = observers
        self._leases = leases
        self._wakeup = wakeup
        self._worker_id = settings.worker_id
        self._lease_duration = settings.lease_duration
        # Notifications nobody subscribes to are not even built (a validated model per command adds up).
        self._subscribed = {kind: mediator.has_subscribers(kind) for kind in _NOTIFICATIONS}
        self._threaded: dict[type[Command[Any]], bool] = {}
        #: Whether attempts open a span: the application has set a tracer provider that may record. Asked once per
        #: claimed batch (``start_batch``), not per attempt: asking costs an environment lookup in the API.
        self._traced = False

    def start_batch(self) -> None:
        """A claim is about to hand its entries to ``execute``: look again whether attempts are traced."""
        self._traced = _tracing.ENABLED and _tracing.recording()

    async def execute(self, entry: ScheduledCommandEntry) -> None:
        """Wait until the entry is due (it may have been claimed ahead), then attempt it."""
        now = self._clock.now()
        if entry.scheduled_for > now:
            await self._wait_until_due(entry)
            now = self._clock.now()
        await self._attempt(entry, now)

    async def record_lost(self, entry: ScheduledCommandEntry, lost: WorkerLostError) -> None:
        """Record the attempt of a worker that died holding the entry."""
        started = entry.started_at or self._clock.now()
        await self._record_failure(entry, started, lost, "lost", worker_id=lost.worker_id or "unknown")

    async def _wait_until_due(self, entry: ScheduledCommandEntry) -> None:
        """Until the entry claimed ahead is due (its slot and lease held). Cancelled meanwhile (stopping, or the
        lease was lost): the entry is given back, no attempt counted."""
        self._leases.not_started.add(entry.id)
        try:
            await self._clock.sleep_until(entry.scheduled_for)
        except asyncio.CancelledError:
            if entry.id in self._leases.cancelled_here:
                await self._leases.release(entry)
            raise
        finally:
            self._leases.not_started.discard(entry.id)

    async def _attempt(self, entry: ScheduledCommandEntry, started: datetime) -> None:
        if entry.recurring_name is not None:  # before the expiry check: a skipped occurrence still advances
            await self._advance_recurring(entry, started)
        if entry.expires_at is not None and entry.attempt_count == 0 and started >= entry.expires_at:
            await self._expire(entry, started)
            return
        if entry.cancel_requested_at is not None:  # asked while an earlier holder had it: it does not run again
            await self._cancelled(entry, started)
            return
        if self._observers:
            self._observers.on_started(entry, started)
        run_context = CommandContext.of(entry)
        if self._traced:
            with _tracing.attempt_span(entry, run_context.queue):
                await self._run(entry, started, run_context)
        else:
            await self._run(entry, started, run_context)

    async def _run(self, entry: ScheduledCommandEntry, started: datetime, run_context: CommandContext) -> None:
        """Decode the command, send it, record the outcome."""
        try:
            command = self._codec.decode(entry.command_type, entry.payload)
        except UndeliverableCommandError as exc:
            await self._record_failure(entry, started, exc, "failed", permanent=True)
            return
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("running %s %s", entry.command_type, entry.id, extra=entry_extra("run", entry))
        deadline = None if entry.timeout_seconds is None else asyncio.timeout(entry.timeout_seconds)
        self._leases.cancels.watch(entry, run_context)
        try:
            try:
                result = await self._send(entry, command, deadline, run_context)
            finally:
                cancel_requested = self._leases.cancels.unwatch(entry.id)
        except asyncio.CancelledError as exc:
            if entry.id in self._leases.cancelled_here:  # stopping, or the lease was lost: give the entry back
                if _tracing.ENABLED:
                    _tracing.record_outcome("released")
                await self._leases.release(entry)
                raise
            task = asyncio.current_task()
            if task is not None:  # a request to cancel it, or the handler cancelled itself (its failure)
                while task.cancelling():
                    task.uncancel()
            if cancel_requested:
                await self._cancelled(entry, started)
            else:
                await self._record_failure(entry, started, exc, "failed")
            return
        except BaseException as exc:  # noqa: BLE001 - one command must never bring the worker down
            # Our deadline's TimeoutError, not the handler's own (a partner's timeout): that one is an ordinary failure.
            timed_out = deadline is not None and deadline.expired() and isinstance(exc, TimeoutError)
            await self._record_failure(entry, started, exc, "timed_out" if timed_out else "failed")
            return
        try:
            result_payload = None if result is None else pydantic_core.to_json(result).decode()
        except Exception as exc:  # noqa: BLE001 - an unserializable result is the handler's bug, not ours
            failure = _PermanentFailure(f"the handler's result of type {type(result).__qualname__} is not JSON: {exc}")
            await self._record_failure(entry, started, failure, "failed", permanent=True)
            return
        await self._complete(entry, started, result_payload)

    async def _send(
        self,
        entry: ScheduledCommandEntry,
        command: Command[T],
        deadline: asyncio.Timeout | None,
        run_context: CommandContext,
    ) -> T:
        """Send the command through the mediator, with ``run_context`` current, under ``deadline`` if any."""
        token = context.enter(run_context)
        try:
            if deadline is None:
                return await self._mediator.send(command)
            assert entry.timeout_seconds is not None
            return await self._send_within(entry, deadline, entry.timeout_seconds, command)
        finally:
            context.leave(token)

    async def _send_within(
        self, entry: ScheduledCommandEntry, deadline: asyncio.Timeout, seconds: float, command: Command[T]
    ) -> T:
        """Send the command under ``deadline`` (``seconds`` of real time).

        A plain ``def`` handler cannot be interrupted: the mediator's cancelled send returns only once the handler's
        thread has returned, so until then this attempt keeps its task (the entry's concurrency slot) and its lease
        (renewed by the heartbeat), and its outcome, with the retry it may schedule, is recorded only afterwards.

        Raises:
            TimeoutError: the deadline expired (``deadline.expired()``), or the handler's own, unchanged.
        """
        loop = asyncio.get_running_loop()
        held = None
        if self._runs_in_thread(type(command)):
            held = loop.call_later(seconds, self._log_held, entry, seconds)
        try:
            async with deadline:
                return await self._mediator.send(command)
        except TimeoutError as exc:
            if not deadline.expired():  # the handler's own TimeoutError (a partner's): an ordinary failure
                raise
            message = f"attempt exceeded its timeout of {seconds:g}s"
            when = deadline.when()
            if held is not None and when is not None:
                message += (
                    f"; its plain def handler could not be interrupted and its thread returned "
                    f"{max(0.0, loop.time() - when):.3f}s later (the entry was held until then)"
                )
            raise TimeoutError(message) from exc
        finally:
            if held is not None:
                held.cancel()

    def _runs_in_thread(self, command_type: type[Command[Any]]) -> bool:
        """Whether the command's handler is a plain ``def`` (run in a thread by the mediator); cached per type."""
        try:
            return self._threaded[command_type]
        except KeyError:
            handle = getattr(self._mediator.handler_for(command_type), "handle", None)
            # As the mediator decides: a decorated ``async def handle`` (functools.wraps) still runs on the loop.
            threaded = handle is not None and not (
                inspect.iscoroutinefunction(handle) or inspect.iscoroutinefunction(inspect.unwrap(handle))
            )
            self._threaded[command_type] = threaded
            return threaded

    def _log_held(self, entry: ScheduledCommandEntry, seconds: float) -> None:
        logger.warning(
            "%s %s passed its timeout of %gs in a plain def handler, which cannot be interrupted: the entry stays "
            "held (slot and lease) until its thread returns, then the attempt is recorded as timed out",
            entry.command_type,
            entry.id,
            seconds,
            extra=entry_extra("timeout_held", entry),
        )

    async def _advance_recurring(self, entry: ScheduledCommandEntry, now: datetime) -> None:
        """Create the next occurrence of the entry's schedule (idempotent; a failure is logged, never fatal: the
        application's next declaration of the schedule recreates it)."""
        try:
            await store_call(
                self._lease_duration,
                recurring_ops.advance,
                self._store,
                entry,
                now,
                default_max_retries=self._settings.max_retries,
            )
        except Exception as exc:  # noqa: BLE001 - logged by log_failure; the service keeps going
            log_failure(
                exc,
                "could not create the next occurrence of recurring schedule %s",
                entry.recurring_name,
                extra=entry_extra("recurring_failed", entry),
            )

    # -- outcomes ---------------------------------------------------------------------------------------------

    def _complete(self, entry: ScheduledCommandEntry, started: datetime, result_payload: str | None) -> Awaitable[None]:
        # Not a coroutine itself (it returns _report's): every command completes, and a coroutine frame fewer here
        # keeps the split service as fast as the single class it replaced.
        finished = self._clock.now()
        attempt = AttemptRecord(
            attempt=entry.attempt_count + 1,
            worker_id=self._worker_id,
            started_at=started,
            finished_at=finished,
            outcome="completed",
        )
        if self._traced:  # else no span of this attempt's is current
            _tracing.record_outcome("completed")
        assert entry.lease_token is not None  # a claimed entry
        return self._report(
            _COMPLETED,
            entry,
            store_call(
                self._lease_duration,
                self._store.complete,
                entry.id,
                entry.lease_token,
                result_payload=result_payload,
                attempt=attempt,
            ),
            started,
            finished,
            (entry.command_type, entry.id),
            lambda: ScheduledCommandCompleted.of(entry, finished, result_payload),
        )

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
        message = error_message(exc)
        if _tracing.ENABLED:
            _tracing.record_failure(outcome, exc, message)
        number = entry.attempt_count + 1
        attempt = AttemptRecord(
            attempt=number,
            worker_id=worker_id or self._worker_id,
            started_at=started,
            finished_at=finished,
            outcome=outcome,
            error=error_text(exc, message),
        )
        token = entry.lease_token
        assert token is not None  # a claimed entry
        if not permanent and entry.retry_count < entry.max_retries:
            due = next_attempt_at(entry.retry_count + 1, finished, self._settings)
            await self._report(
                _RETRYING,
                entry,
                store_call(
                    self._lease_duration,
                    self._store.retry_later,
                    entry.id,
                    token,
                    due=due,
                    error_message=message,
                    attempt=attempt,
                ),
                started,
                finished,
                (number, entry.command_type, entry.id, message, due.isoformat()),
                lambda: ScheduledCommandRetrying.of(entry, finished, number, message, due),
                wake_at=due,
            )
            return
        await self._report(
            _DEAD_LETTERED,
            entry,
            store_call(
                self._lease_duration, self._store.dead_letter, entry.id, token, error_message=message, attempt=attempt
            ),
            started,
            finished,
            (entry.command_type, entry.id, number, message),
            lambda: ScheduledCommandFailed.of(entry, finished, number, message),
        )

    async def _cancelled(self, entry: ScheduledCommandEntry, started: datetime) -> None:
        """End the entry CANCELLED on an operator's request, recording the attempt as cancelled; not retried."""
        finished = self._clock.now()
        if _tracing.ENABLED:
            _tracing.record_outcome("cancelled")
        attempt = AttemptRecord(
            attempt=entry.attempt_count + 1,
            worker_id=self._worker_id,
            started_at=started,
            finished_at=finished,
            outcome="cancelled",
            error=CANCELLED,
        )
        assert entry.lease_token is not None  # a claimed entry
        cancel = self._store.cancel_claimed
        await self._report(
            _CANCELLED,
            entry,
            store_call(
                self._lease_duration, cancel, entry.id, entry.lease_token, error_message=CANCELLED, attempt=attempt
            ),
            started,
            finished,
            (entry.command_type, entry.id),
            lambda: ScheduledCommandCancelled.of(entry, finished),
        )

    async def _expire(self, entry: ScheduledCommandEntry, now: datetime) -> None:
        token = entry.lease_token
        assert token is not None  # a claimed entry
        await self._report(
            _EXPIRED,
            entry,
            store_call(self._lease_duration, self._store.expire, entry.id, token, now=now),
            now,
            now,
            (entry.command_type, entry.id, entry.expires_at.isoformat() if entry.expires_at else "?"),
            lambda: ScheduledCommandExpired.of(entry, now),
        )

    async def _report(
        self,
        outcome: _Outcome,
        entry: ScheduledCommandEntry,
        written: Awaitable[bool],
        started: datetime,
        finished: datetime,
        log_args: tuple[object, ...],
        notification: Callable[[], ScheduledCommandNotification],
        *,
        wake_at: datetime | None = None,
    ) -> None:
        """The one reporting path: the store's lease-fenced write; then, only if it took, the observers, the log
        record, a wake-up for the loop (an entry due again at ``wake_at``) and the notification. The entry's slot is
        free for the next claim from the start of the write (its lease is held until the write is done); the
        notification's handlers take a slot again."""
        self._leases.recording_outcome(entry.id)
        took = await written
        self._leases.outcome_written(entry.id)
        if not took:
            logger.warning(
                "could not %s %s %s: this worker no longer holds its lease (another worker took it over)",
                outcome.step,
                entry.command_type,
                entry.id,
                extra=entry_extra("lease_lost", entry),
            )
            return
        if self._observers:
            if outcome.observed_as is None:
                self._observers.on_cancelled([entry])
            else:
                self._observers.on_finished(entry, outcome.observed_as, started, finished)
        if logger.isEnabledFor(outcome.level):
            logger.log(outcome.level, outcome.message, *log_args, extra=entry_extra(outcome.action, entry))
        if wake_at is not None:
            self._wakeup.notify(wake_at)
        if self._subscribed[outcome.notification]:
            await publish_safely(self._mediator, notification())
