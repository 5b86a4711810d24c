"""``SyncScheduler``: the scheduler's operations for synchronous code (Django, Flask, scripts), on a ``SqlStore``.

No event loop is needed by the caller and none is started per call: the statements run on a blocking SQLAlchemy
engine (sqlite3, psycopg 3) of the store's database. The entries are built and validated by ``CommandScheduler``'s
own code, so a command refused by ``await scheduler.schedule()`` is refused here with the same error, and a
command accepted here is the same row a worker claims.

``schedule(..., session=...)`` joins the caller's transaction: a SQLAlchemy/SQLModel ``Session`` or ``Connection``,
or a Django database connection (``django.db.connection``), so the entry exists if and only if the caller commits.
On commit the workers are woken: PostgreSQL by a ``NOTIFY`` sent in the transaction, SQLite by the commit itself
(workers watch the file).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from injector import inject, singleton

from mediator import Command, Mediator
from stores.base import ScheduledCommandStore
from stores.errors import UnsupportedFeatureError
from stores.sql import ENTRIES, SqlStore
from stores.sql._sync import SyncSql, sync_sql_for

from .clock import Clock
from .entries import AttemptRecord, ScheduledCommandEntry
from .observer import SchedulingObservers
from .options import ScheduleOptions, SchedulerSettings
from .scheduler import CommandScheduler, refuse_a_shared_idempotency_key

__all__ = ["SyncScheduler"]

logger = logging.getLogger("scheduling.scheduler")

_DEFAULT_OPTIONS = ScheduleOptions()


@singleton
class SyncScheduler:
    """``CommandScheduler``'s operations for synchronous callers, on the same ``SqlStore`` (SQLite or PostgreSQL).

    Get it from the injector that has ``SchedulingModule`` (``injector.get(SyncScheduler)``, one per injector), or
    build it from the same parts. It needs a ``SqlStore``: a ``MemoryStore`` lives in one process's event loop and a
    synchronous caller cannot share it, so it is refused with ``TypeError``.

    The schema is the async store's. On first use the scheduler checks it: a database whose schema is newer than
    this version of the library is refused with ``SchemaVersionError`` (as the async store does); a database
    without the schema, or with an older one, is created or upgraded by the async store's own ``migrate()``, once.

    It holds a pool of connections: ``close()`` it (or use it as a context manager) when the application stops.

    Lifecycle notifications (``ScheduledCommandCancelled``) are published by the async scheduler only: their
    handlers are async and run in-process; ``SyncScheduler.cancel`` calls the observers and logs, as the async one.

    .. versionadded:: 0.5
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
        if not isinstance(store, SqlStore):
            raise TypeError(
                f"SyncScheduler needs a SqlStore (SQLite or PostgreSQL), not {store.description}: it writes through "
                "a blocking SQL engine, and a MemoryStore's entries live in one process's memory, out of reach of "
                "another process; use SqlStore('sqlite:///path/to/file.db') or a PostgreSQL URL"
            )
        # The async scheduler builds and validates the entries: the same checks, the same errors.
        self._planner = CommandScheduler(store, mediator, settings, clock, observers)
        self._sql: SyncSql = sync_sql_for(store)
        self._clock = clock
        self._observers = observers
        self._description = store.description

    @property
    def description(self) -> str:
        return self._description

    def open(self) -> None:
        """Connect and check (or create) the schema now, to fail fast at start-up; first use does it too.

        Raises:
            StoreUnavailableError: the database cannot be reached.
            SchemaVersionError: its schema is newer than this version of the library.
        """
        self._sql.open()

    def close(self) -> None:
        """Close the scheduler's connections (it reconnects if used again)."""
        self._sql.close()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # -- scheduling -------------------------------------------------------------------------------------------

    def schedule(self, command: Command[Any], options: ScheduleOptions | None = None, *, session: Any = None) -> str:
        """Store ``command`` to run when due; return its id (see ``CommandScheduler.schedule``).

        Args:
            command: the command; its handler must be registered with the mediator.
            options: delay, priority, retries, idempotency key, ...
            session: the caller's SQLAlchemy/SQLModel ``Session`` or ``Connection``, or a Django connection
                (``django.db.connection``), on the store's database: the entry joins its transaction and exists if
                and only if the caller commits.

        Raises:
            HandlerNotFoundError, NotACommandError, PayloadTooLargeError, ValueError, UnimportableCommandError: as
                ``CommandScheduler.schedule``; nothing is stored.
            SessionNotSupportedError: ``session`` is on another database, or is not a session or connection.
        """
        (entry_id,) = self.schedule_many([command], options, session=session)
        return entry_id

    def schedule_many(
        self, commands: Sequence[Command[Any]], options: ScheduleOptions | None = None, *, session: Any = None
    ) -> list[str]:
        """Store several commands at once (all or none), with the same options; return their ids in order."""
        options = options or _DEFAULT_OPTIONS
        refuse_a_shared_idempotency_key(commands, options)
        if not commands:
            return []
        if options.after:
            raise UnsupportedFeatureError(
                self._description,
                f"ScheduleOptions.after ({list(options.after)!r}) from SyncScheduler",
                "schedule dependants with CommandScheduler",
            )
        planner = self._planner
        planner._refuse_unimportable(commands)
        entries = planner._entries_for(commands, options, self._clock.now())
        return planner._announce_scheduled(entries, self._sql.add(entries, session))

    # -- operator actions and reads ---------------------------------------------------------------------------

    def cancel(self, command_id: str) -> bool:
        """Cancel a PENDING command; True only if it was PENDING and now is CANCELLED.

        Raises:
            UnsupportedFeatureError: the command is part of a workflow (WAITING, or has dependants): cancel it with
                ``CommandScheduler.cancel``, which resolves its dependants in the same transaction.
        """
        cancelled = self._cancelled(self._sql.cancel(ENTRIES.c.id == command_id, self._clock.now()))
        if not cancelled and self._sql.in_a_workflow(command_id):
            raise UnsupportedFeatureError(
                self._description,
                f"cancelling {command_id}, an entry of a workflow, from SyncScheduler",
                "use CommandScheduler.cancel",
            )
        return bool(cancelled)

    def cancel_by_correlation_id(self, correlation_id: str) -> int:
        """Cancel every PENDING command of a correlation id that is no part of a workflow (those are left to
        ``CommandScheduler.cancel_by_correlation_id``); return how many were cancelled."""
        return len(self._cancelled(self._sql.cancel(ENTRIES.c.correlation_id == correlation_id, self._clock.now())))

    def _cancelled(self, entries: list[ScheduledCommandEntry]) -> list[ScheduledCommandEntry]:
        if entries and self._observers:
            self._observers.on_cancelled(entries)
        for entry in entries:
            logger.info(
                "cancelled %s %s",
                entry.command_type,
                entry.id,
                extra={"action": "cancel", "command_id": entry.id, "command_type": entry.command_type},
            )
        return entries

    def requeue(self, command_id: str) -> bool:
        """Run a dead-lettered (FAILED) command again: PENDING, due now, retry count 0. False otherwise."""
        return bool(self._sql.requeue(ENTRIES.c.id == command_id, self._clock.now()))

    def get_status(self, command_id: str) -> ScheduledCommandEntry | None:
        """A snapshot of the entry, or None if the store does not hold it."""
        return self._sql.get(command_id)

    def get_attempts(self, command_id: str) -> list[AttemptRecord]:
        """Every attempt at running the command, oldest first."""
        return self._sql.get_attempts(command_id)
