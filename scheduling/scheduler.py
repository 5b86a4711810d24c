"""``CommandScheduler``: put commands into the store for later; cancel, requeue and inspect them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, TypeVar, overload

from injector import inject

from mediator import Command, Mediator
from stores.base import ScheduledCommandStore

from . import _cancels, _dependants_cancelled, _tracing, recurring_ops
from ._command_checks import CommandChecks
from ._new_entry import new_entry, recurring_lock
from ._publish import publish_safely
from ._scheduler_queues import QueueMethods
from ._sibling_entries import STREAM_FROM, SiblingEntries
from .clock import Clock
from .codec import command_type_name
from .entries import AttemptRecord, ScheduledCommandEntry
from .errors import (
    CommandNotFoundError,
    InvalidScheduleError,
)
from .notifications import ScheduledCommandCancelled
from .observer import SchedulingObservers
from .options import ScheduleOptions, SchedulerSettings, queue_for
from .recurring import MisfirePolicy, RecurringSchedule, check_definition
from .results import ScheduledCommandId, decode_result, seconds, wait_until_finished
from .workers import WaitingForWorker, WorkerInfo, list_workers, waiting_for_workers
from .workflows import WorkflowMethods

__all__ = ["CommandScheduler", "ICommandScheduler"]

logger = logging.getLogger(__name__)

_DEFAULT_OPTIONS = ScheduleOptions()
R = TypeVar("R")
#: A duration as a ``timedelta`` or seconds, or None for no limit.
Duration = timedelta | float | None


class CommandScheduler(QueueMethods, WorkflowMethods):
    """Schedules commands into the store; the ``ScheduledCommandService`` runs them when due.

    Get it from the injector (``injector.get(CommandScheduler)``) after installing ``SchedulingModule``.

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
    ) -> None:
        self._store = store
        self._mediator = mediator
        self._settings = settings
        self._clock = clock
        self._observers = observers
        self._checks = CommandChecks(store, mediator, settings)
        _dependants_cancelled.listen_for_cancelled_dependants(store, mediator, clock, observers)

    @property
    def store(self) -> ScheduledCommandStore:
        return self._store

    async def schedule(
        self, command: Command[R], options: ScheduleOptions | None = None, *, session: Any = None
    ) -> ScheduledCommandId[R]:
        """Store ``command`` to run when due; return its id (a ``str``, typed with the command's result type for
        ``wait()``).

        With an ``idempotency_key`` the store still holds, returns the first entry's id and stores nothing.
        With ``session`` (the caller's SQLAlchemy/SQLModel ``Session`` or ``AsyncSession`` on the store's database),
        the entry joins the caller's transaction: it exists if and only if the caller commits.

        Raises:
            HandlerNotFoundError: no handler is registered for the command's type.
            NotACommandError: ``command`` is not a ``Command``.
            PayloadTooLargeError: it serializes to more than ``max_payload_bytes``.
            ValueError: its JSON would not decode to an equal command (NaN or infinity, a field with an alias,
                nesting deeper than the parser reads, ...), naming the field; see docs/scheduling.md.
            SessionNotSupportedError: ``session`` was given but the store is not a ``SqlStore``.
            UnimportableCommandError: the command's class is defined in ``__main__`` and the store is durable (a
                worker process could never import it); nothing was stored.
            UnknownParentError: ``options.after`` names an entry the store does not hold; nothing was stored.
            UnsupportedFeatureError: ``options.after`` on a store that cannot keep dependencies (a third-party store).
        """
        # ``schedule_many`` of one command, without the work a batch needs (its class checks, per-class lookups and
        # derived copies): the same checks in the same order, on the one entry.
        options = options or _DEFAULT_OPTIONS
        entries = [self._entry_for(command, options, self._clock.now())]
        (entry_id,) = self._announce_scheduled(entries, await self._store_entries(entries, options, session))
        return ScheduledCommandId(entry_id)

    async def schedule_many(
        self, commands: Sequence[Command[Any]], options: ScheduleOptions | None = None, *, session: Any = None
    ) -> list[str]:
        """Store several commands at once (all or none), with the same options; return their ids in order.

        An ``idempotency_key`` names one command, so ``options`` with a key and several commands is a ``ValueError``.
        """
        options = options or _DEFAULT_OPTIONS
        refuse_a_shared_idempotency_key(commands, options)
        if not commands:
            return []
        self._refuse_unimportable(commands)
        if len(commands) >= STREAM_FROM and session is None and not options.after:
            first = self._entry_for(commands[0], options, self._clock.now())
            built: list[ScheduledCommandEntry] = []
            chunks = SiblingEntries(self._checks, commands[0], first, options).chunks(commands, built)
            return self._announce_scheduled(built, await self._store.add_streamed(chunks))
        entries = self._entries_for(commands, options, self._clock.now())
        return self._announce_scheduled(entries, await self._store_entries(entries, options, session))

    async def _store_entries(
        self, entries: list[ScheduledCommandEntry], options: ScheduleOptions, session: Any
    ) -> list[str]:
        """Store new entries: after their parents, in the caller's session, or on their own; the ids stored."""
        if options.after:
            return await self._add_after(entries, options, session)
        if session is not None:
            return await self._store.add_in_session(session, entries)
        return await self._store.add(entries)

    def _announce_scheduled(self, entries: list[ScheduledCommandEntry], ids: list[str]) -> list[str]:
        """Tell the observers and the debug log what was stored; ``ids`` as the store returned them (also for
        ``SyncScheduler``, which stores without an event loop)."""
        if self._observers:  # an idempotency key the store already held stored nothing: not counted
            self._observers.on_scheduled([e for e, stored in zip(entries, ids, strict=True) if e.id == stored])
        if logger.isEnabledFor(logging.DEBUG):
            for entry, stored_id in zip(entries, ids, strict=True):
                logger.debug(
                    "scheduled %s %s for %s",
                    entry.command_type,
                    stored_id,
                    entry.scheduled_for.isoformat(),
                    extra={"action": "schedule", "command_id": stored_id, "command_type": entry.command_type},
                )
        return ids

    def _refuse_unimportable(self, commands: Sequence[Command[Any]]) -> None:
        """On a durable store, refuse command classes defined in ``__main__``: no worker can import them."""
        self._checks.refuse_unimportable(commands)

    def _entries_for(
        self, commands: Sequence[Command[Any]], options: ScheduleOptions, now: Any
    ) -> list[ScheduledCommandEntry]:
        """One validated entry for the first command; the others share its options and due time, so they are
        copies of it with their own id, type and payload (the checks of ``_entry_for`` still run per command)."""
        first = self._entry_for(commands[0], options, now)
        return [first, *SiblingEntries(self._checks, commands[0], first, options).of(commands[1:])]

    def _entry_for(self, command: Command[Any], options: ScheduleOptions, now: Any) -> ScheduledCommandEntry:
        command_type = self._checks.type_name(command)
        payload = self._checks.payload(command, command_type)
        try:
            due = options.due_at(now)
            expires_at = due + options.expires_after if options.expires_after is not None else None
        except OverflowError:
            raise ValueError(
                f"the due time or expiry of {command_type} is past the year 9999 "
                f"(delay={options.delay!r}, expires_after={options.expires_after!r})"
            ) from None
        return new_entry(
            command_type,
            payload,
            options,
            scheduled_for=due,
            expires_at=expires_at,
            now=now,
            default_max_retries=self._settings.max_retries,
            trace_context=_tracing.capture() if _tracing.ENABLED else None,
            queue=self._checks.queue(type(command), options),
        )

    async def cancel(self, command_id: str, *, running: bool = False) -> bool:
        """Cancel a PENDING command; True only if it was PENDING and now is CANCELLED. ``running=True`` (0.6): a
        PROCESSING one too: its worker hears the request within a second, cancels the handler (a ``def`` one sees
        ``CommandContext.cancel_requested``), records the attempt as ``"cancelled"``, ends it CANCELLED (no retry).
        True then means the request is stored (an attempt that finishes first keeps its outcome: see ``wait()``).
        """
        now = self._clock.now()
        entry = await self._store.cancel(command_id, now=now)
        if entry is not None:
            await self._announce_cancelled([entry])
            await _dependants_cancelled.settle(mine_only=True)  # its dependants, cancelled with it, are announced
            return True
        if not running:
            return False
        return await _cancels.request(self._store, command_id, now)

    async def cancel_by_correlation_id(self, correlation_id: str) -> int:
        """Cancel every PENDING command of a correlation id; return how many were cancelled."""
        entries = await self._store.cancel_by_correlation_id(correlation_id, now=self._clock.now())
        await self._announce_cancelled(entries)
        await _dependants_cancelled.settle(mine_only=True)
        return len(entries)

    async def get_status(self, command_id: str) -> ScheduledCommandEntry | None:
        """A snapshot of the entry, or None if the store does not hold it."""
        return await self._store.get(command_id)

    async def requeue(self, command_id: str) -> bool:
        """Run a dead-lettered (FAILED) command again: PENDING, due now, retry count 0. False otherwise."""
        return await self._store.requeue(command_id, now=self._clock.now())

    async def get_attempts(self, command_id: str) -> list[AttemptRecord]:
        """Every attempt at running the command, oldest first."""
        return await self._store.get_attempts(command_id)

    # -- results ----------------------------------------------------------------------------------------------

    # ``timeout=`` as in asyncio.wait_for and the contract (API.md section 6), hence the noqa: ASYNC109.
    @overload
    async def wait(self, command_id: ScheduledCommandId[R], *, timeout: Duration = None) -> R: ...  # noqa: ASYNC109
    @overload
    async def wait(self, command_id: str, *, timeout: Duration = None) -> object: ...  # noqa: ASYNC109
    async def wait(self, command_id: str, *, timeout: Duration = None) -> Any:  # noqa: ASYNC109
        """Wait until the command finishes; return its handler's result, decoded with the command's result type.

        Woken by the store when the entry finishes, in this process or another (see docs/scheduling.md, "Waiting
        for a result"), not by polling. A command that is retried is waited for until its last attempt.

        Args:
            command_id: what ``schedule()`` returned (then the result is typed ``R`` of ``Command[R]``), or any id
                as a plain ``str`` (then it is typed ``object``: the type checker cannot know the command's type).
            timeout: the longest wait, as a ``timedelta`` or seconds of real (monotonic) time, not of the
                scheduler's ``Clock``; ``None`` waits as long as it takes.

        Returns:
            The result, validated as ``R``; ``None`` for a command whose handler returns nothing.

        Raises:
            CommandFailedError: the command was dead-lettered; ``error_message`` is its stored error.
            CommandExpiredError: it expired before it could run.
            CommandCancelledError: it was cancelled.
            CommandNotFoundError: the store does not hold the id.
            TimeoutError: ``timeout`` passed first (the command may still run later).

        .. versionadded:: 0.5
        """
        wait_seconds = seconds(timeout, "timeout")
        recheck = self._settings.wait_recheck_interval.total_seconds()
        entry = await wait_until_finished(self._store, command_id, within=wait_seconds, recheck_every=recheck)
        return decode_result(entry, self._command_class(entry.command_type))

    @overload
    async def result(self, command_id: ScheduledCommandId[R]) -> R: ...
    @overload
    async def result(self, command_id: str) -> object: ...
    async def result(self, command_id: str) -> Any:
        """The result of a finished command, typed like ``wait()``'s, without waiting.

        ``entry.result_payload`` stays the stored JSON text, for operators; this is the decoded value, for code.

        Raises:
            CommandNotFinishedError: the command is still PENDING or PROCESSING.
            CommandFailedError, CommandExpiredError, CommandCancelledError, CommandNotFoundError: as ``wait()``.

        .. versionadded:: 0.5
        """
        entry = await self._store.get(command_id)
        if entry is None:
            raise CommandNotFoundError(command_id, self._store.description)
        return decode_result(entry, self._command_class(entry.command_type))

    def _command_class(self, command_type: str) -> type[Command[Any]] | None:
        """The registered command class stored under ``command_type``, or None."""
        for request_type in self._mediator.request_types:
            if issubclass(request_type, Command) and command_type_name(request_type) == command_type:
                return request_type
        return None

    # -- recurring schedules ----------------------------------------------------------------------------------

    async def schedule_recurring(
        self,
        name: str,
        command: Command[Any],
        *,
        cron: str | None = None,
        interval: timedelta | None = None,
        timezone: str = "UTC",
        options: ScheduleOptions | None = None,
        misfire_policy: MisfirePolicy = "skip",
        overlap: bool = False,
    ) -> RecurringSchedule:
        """Declare (or update) the recurring schedule ``name``: run ``command`` at every occurrence of ``cron``
        (read in ``timezone``) or every ``interval``.

        Declaring an unchanged schedule again changes nothing, so an application may declare its schedules at
        every start-up, from every process. A changed one gets a new generation: its pending occurrences are
        cancelled and the first occurrence of the new definition is created. A paused schedule stays paused.

        Args:
            name: the schedule's unique name.
            command: the command each occurrence runs.
            cron: 5 fields, or 6 with seconds first; ranges, lists, steps, names and ``@daily``-style aliases.
            interval: a positive ``timedelta``, counted from the first declaration, in UTC. Not with ``cron``.
            timezone: the IANA time zone ``cron`` is read in.
            options: per-occurrence options (priority, max_retries, expires_after, timeout, correlation_id,
                metadata); not ``scheduled_for``, ``delay`` or ``idempotency_key``.
            misfire_policy: ``skip`` (default), ``run_once`` or ``run_all``: see docs/recurring.md.
            overlap: False (default): an occurrence never starts while another one of this schedule runs, across
                the fleet; it waits PENDING (its occurrences lock on ``recurring:{name}``, unless ``options.lock``
                names another lock). True: occurrences may run at once.

        Returns:
            The stored schedule, with ``next_run_at``.

        Raises:
            InvalidScheduleError: a bad cron expression or time zone, both or neither of ``cron`` and ``interval``,
                a non-positive interval, or options that do not apply. Nothing is stored.
            HandlerNotFoundError: no handler is registered for the command's type.
            PayloadTooLargeError: the command serializes to more than ``max_payload_bytes``.

        .. versionadded:: 0.2
        """
        options = options or _DEFAULT_OPTIONS
        normalized = check_definition(name, cron=cron, interval=interval, timezone=timezone, options=options)
        self._refuse_unimportable([command])
        if misfire_policy not in ("skip", "run_once", "run_all"):
            raise InvalidScheduleError(
                f"misfire_policy must be skip, run_once or run_all, not {misfire_policy!r}", name
            )
        now = self._clock.now()
        template = self._entry_for(command, ScheduleOptions(), now)  # the handler and payload checks of schedule()
        queue = queue_for(type(command), options)
        if queue != options.queue:  # the command class's default queue, stored with the schedule
            options = options.model_copy(update={"queue": queue})
        if not overlap and options.lock is None:  # stored with the schedule's options: every occurrence holds it
            options = options.model_copy(update={"lock": recurring_lock(name)})
        schedule = RecurringSchedule(
            name=name,
            command_type=template.command_type,
            payload=template.payload,
            cron=normalized,
            interval=interval,
            timezone=timezone,
            options=options,
            misfire_policy=misfire_policy,
            created_at=now,
            updated_at=now,
        )
        stored, cancelled = await recurring_ops.declare(
            self._store, schedule, now, default_max_retries=self._settings.max_retries
        )
        await self._announce_cancelled(cancelled)
        logger.info(
            "declared recurring schedule %s (generation %d), next at %s",
            stored.name,
            stored.generation,
            stored.next_run_at.isoformat() if stored.next_run_at else "-",
            extra={"action": "schedule_recurring", "command_type": stored.command_type},
        )
        return stored

    async def unschedule_recurring(self, name: str) -> bool:
        """Delete the schedule and cancel its pending occurrences; True if it existed.

        .. versionadded:: 0.2
        """
        existed, cancelled = await recurring_ops.remove(self._store, name, self._clock.now())
        await self._announce_cancelled(cancelled)
        return existed

    async def pause_recurring(self, name: str) -> RecurringSchedule | None:
        """Stop creating occurrences and cancel the pending one; the paused schedule, or None if unknown.

        .. versionadded:: 0.2
        """
        paused, cancelled = await recurring_ops.pause(self._store, name, self._clock.now())
        await self._announce_cancelled(cancelled)
        return paused

    async def resume_recurring(self, name: str) -> RecurringSchedule | None:
        """Resume a paused schedule at its next future occurrence; the schedule, or None if unknown.

        .. versionadded:: 0.2
        """
        return await recurring_ops.resume(
            self._store, name, self._clock.now(), default_max_retries=self._settings.max_retries
        )

    async def get_recurring(self, name: str) -> RecurringSchedule | None:
        """The schedule of that name, or None.

        .. versionadded:: 0.2
        """
        stored = await self._store.get_schedule(name)
        return RecurringSchedule.from_stored(stored) if stored is not None else None

    async def list_recurring(self) -> list[RecurringSchedule]:
        """Every recurring schedule, by name.

        .. versionadded:: 0.2
        """
        return [RecurringSchedule.from_stored(s) for s in await self._store.list_schedules()]

    async def list_workers(self) -> list[WorkerInfo]:
        """The live fleet and the recently gone: every registered worker, by start time, with its state now.

        A worker is ``gone`` once it stopped, or was not seen for its lease duration (it missed every renewal);
        gone workers are forgotten after ``SchedulerSettings.worker_retention``.

        .. versionadded:: 0.5
        """
        return await list_workers(self._store, self._clock.now())

    async def waiting_for_workers(self) -> list[WaitingForWorker]:
        """The due entries no live worker would claim, per queue and command type: what ``status`` reports as
        "waiting for a worker that handles T". Read from the registry ``list_workers()`` shows (while no worker has
        ever registered: a guess, overdue by a minute and of a type none running).

        .. versionadded:: 0.5
        """
        return await waiting_for_workers(self._store, self._clock.now())

    async def _announce_cancelled(self, entries: Sequence[ScheduledCommandEntry]) -> None:
        if entries and self._observers:
            self._observers.on_cancelled(entries)
        for entry in entries:
            logger.info(
                "cancelled %s %s",
                entry.command_type,
                entry.id,
                extra={"action": "cancel", "command_id": entry.id, "command_type": entry.command_type},
            )
            await publish_safely(self._mediator, ScheduledCommandCancelled.of(entry, self._clock.now()))


#: The same class, for readers of the .NET design this API follows.
ICommandScheduler = CommandScheduler


def refuse_a_shared_idempotency_key(commands: Sequence[Command[Any]], options: ScheduleOptions) -> None:
    """An ``idempotency_key`` names one command: ``options`` with a key and several commands is a ``ValueError``."""
    if options.idempotency_key is not None and len(commands) > 1:
        raise ValueError(
            f"idempotency_key={options.idempotency_key!r} cannot be shared by {len(commands)} commands; "
            "schedule them one by one, each with its own key"
        )
