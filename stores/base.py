"""``ScheduledCommandStore``: the narrow, decision-free persistence contract every store implements.

Stores persist; policy lives above them. The store never decides whether to retry, how long to wait or what a
failure means: the service in ``scheduling`` decides and calls one of these methods. Every method is atomic.

Fencing: a claim gives the entry a fresh ``lease_token``. Every method that ends or extends a claim takes that
token and changes nothing (returning ``False``) unless the entry is still PROCESSING under that very token, so a
worker that lost its lease can neither complete nor fail an entry that another worker now holds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, NamedTuple, Self

from ._audit_contract import AuditTrailStore
from ._dependencies_contract import DependencyStore
from .entries import TERMINAL_STATUSES, AttemptRecord, ScheduledCommandEntry, ScheduledCommandStatus
from .errors import SessionNotSupportedError, UnreadableEntryError, UnsupportedFeatureError
from .filters import EntryFilter
from .outcomes import OutcomeCount, count_outcomes_by_scanning
from .queues import QueueInfo, QueueLimits, Route
from .schedules import StoredSchedule
from .workers import StoredWorker, StoredWorkerState

__all__ = [
    "DependantsCancelledListener",
    "FinishListener",
    "FinishedCount",
    "ReclaimedEntry",
    "ScheduledCommandStore",
    "StatusCount",
    "WakeupListener",
    "check_bucket",
    "finished_counts",
]

#: Called with the earliest due time of entries that just became PENDING (added, requeued or released).
WakeupListener = Callable[[datetime], None]
#: Called with the id of a watched entry that reached a terminal status (or may have: the caller re-reads it).
FinishListener = Callable[[str], None]
#: Called, after the commit, with the dependants this store instance cancelled because a parent ended otherwise than
#: their condition needs (and the cascade below them), as stored: CANCELLED, ``error_message`` naming the parent.
DependantsCancelledListener = Callable[[Sequence[ScheduledCommandEntry]], None]


class ReclaimedEntry(NamedTuple):
    """An entry taken over from a worker whose lease expired."""

    #: The entry, now PROCESSING under the reclaiming worker's new lease; ``started_at`` is the lost attempt's.
    entry: ScheduledCommandEntry
    #: The worker that held the expired lease.
    previous_owner: str | None
    #: When that lease expired.
    previous_lease_expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class FinishedCount:
    """How many entries reached one terminal status within one time bucket (see ``count_finished_since``)."""

    #: The bucket's start: ``since + n * bucket``; it covers ``[start, start + bucket)``.
    start: datetime
    status: ScheduledCommandStatus
    count: int


@dataclass(frozen=True, slots=True)
class StatusCount:
    """How many entries are in one status (see ``count_by_status_estimated``).

    .. versionadded:: 0.6
    """

    count: int
    #: False: ``count`` is an estimate from the database's statistics ("about"), known to be above the bound asked.
    exact: bool = True


@dataclass(frozen=True, slots=True)
class StoreReading:
    """What the store gauges show, read at one moment (see ``read_gauges``)."""

    counts: dict[ScheduledCommandStatus, int]
    #: The earliest ``scheduled_for`` of a PENDING entry, or None.
    next_due_at: datetime | None
    #: PROCESSING entries under a lease that has not expired (``count_running``).
    running: int
    #: The statuses whose count is an estimate ("about", above the ``exact_up_to`` asked; see ``read_gauges``);
    #: empty when every count is exact. Never PROCESSING.
    estimated: frozenset[ScheduledCommandStatus] = frozenset()


class ScheduledCommandStore(DependencyStore, AuditTrailStore, ABC):
    """The abstract store. Implementations: ``MemoryStore``, ``SqlStore``; every one passes the contract suite.

    A store opens itself on first use. ``async with store:`` or ``open()`` opens it at once, to fail fast (``open()``
    is idempotent); whoever opens a store that way closes it (``close()``, or leaving the ``async with``). A
    ``ScheduledCommandService`` that finds its store not opened that way opens it and closes it when it stops.

    .. versionadded:: 0.1
    """

    #: Whether entries outlive the process and are seen by other processes (a worker elsewhere may run them).
    #: ``CommandScheduler.schedule()`` refuses command classes that other processes cannot import on such a store.
    durable: bool = True

    def __init__(self) -> None:
        self._wakeup_listeners: list[WakeupListener] = []
        self._finish_listeners: dict[str, list[FinishListener]] = {}
        self._dependants_cancelled_listeners: dict[object, DependantsCancelledListener] = {}

    # -- lifecycle --------------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and prepare (for example create tables). Idempotent."""

    async def close(self) -> None:
        """Release connections. The store may be opened again (explicitly, or by its next use)."""

    @property
    def opened_explicitly(self) -> bool:
        """Whether ``open()`` (or ``async with``) opened this store and ``close()`` has not been called since: then
        its opener closes it. A store that opened itself on first use is not: nobody owns it yet, and a service that
        starts on it closes it when it stops.

        A store that does not track this (the default, for stores written before 0.2) reports True, so a service
        leaves closing it to the application, as it always did. ``SqlStore`` tracks it.

        .. versionadded:: 0.2
        """
        return True

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def description(self) -> str:
        """A short, password-free description for logs (for example the masked URL)."""
        return type(self).__name__

    # -- wake-ups ---------------------------------------------------------------------------------------------

    def add_wakeup_listener(self, listener: WakeupListener) -> None:
        """Call ``listener(due)`` whenever entries become PENDING, with their earliest due time.

        A store shared by several processes also calls it for entries that other processes add (PostgreSQL:
        LISTEN/NOTIFY). Listeners must be cheap and must not raise.
        """
        self._wakeup_listeners.append(listener)

    def remove_wakeup_listener(self, listener: WakeupListener) -> None:
        if listener in self._wakeup_listeners:
            self._wakeup_listeners.remove(listener)

    def _notify_wakeup(self, due: datetime) -> None:
        for listener in tuple(self._wakeup_listeners):
            listener(due)

    def add_finish_listener(self, entry_id: str, listener: FinishListener) -> None:
        """Call ``listener(entry_id)`` when that entry reaches a terminal status (COMPLETED, FAILED, EXPIRED,
        CANCELLED), in this process or, on a store shared by several processes, in another one (PostgreSQL:
        LISTEN/NOTIFY; SQLite: the commit watcher; Redis: pub/sub).

        A listener may also be called when the store cannot tell whether the entry finished (it reconnected after
        missing notifications): the caller re-reads the entry. Listeners must be cheap and must not raise; they
        stay registered until removed. Register before reading the entry, so a finish between the two is not missed.

        .. versionadded:: 0.5
        """
        self._finish_listeners.setdefault(entry_id, []).append(listener)

    def remove_finish_listener(self, entry_id: str, listener: FinishListener) -> None:
        """Undo ``add_finish_listener`` (nothing happens when it was not registered).

        .. versionadded:: 0.5
        """
        listeners = self._finish_listeners.get(entry_id)
        if listeners is not None and listener in listeners:
            listeners.remove(listener)
            if not listeners:
                del self._finish_listeners[entry_id]

    def _notify_finished(self, entry_ids: Iterable[str]) -> None:
        """Call the finish listeners of those of ``entry_ids`` that are watched."""
        if not self._finish_listeners:
            return
        for entry_id in entry_ids:
            for listener in tuple(self._finish_listeners.get(entry_id, ())):
                listener(entry_id)

    def set_dependants_cancelled_listener(self, key: object, listener: DependantsCancelledListener | None) -> None:
        """Call ``listener(entries)`` with the dependants that an outcome, a cancellation or an insert written
        through THIS store instance cancelled because of a parent, read in the transaction that cancelled them and
        called once it committed: every path that ends a parent (a worker's outcome, batched or not, an operator
        or correlation cancel, a recurring schedule's cancelled occurrences) reports here. One listener per ``key``
        (setting it again replaces it, ``None`` removes it), so one application announces each cancellation once.
        Listeners must be cheap and must not raise.

        .. versionadded:: 0.7
        """
        if listener is None:
            self._dependants_cancelled_listeners.pop(key, None)
        else:
            self._dependants_cancelled_listeners[key] = listener

    def _notify_dependants_cancelled(self, entries: Sequence[ScheduledCommandEntry]) -> None:
        if entries:
            for listener in tuple(self._dependants_cancelled_listeners.values()):
                listener(entries)

    def _watched_ids(self) -> list[str]:
        """The ids some finish listener waits for."""
        return list(self._finish_listeners)

    def _recheck_finished(self) -> None:
        """Call every finish listener: notifications may have been missed (a reconnection); each re-reads."""
        self._notify_finished(self._watched_ids())

    # -- scheduling -------------------------------------------------------------------------------------------

    @abstractmethod
    async def add(self, entries: Sequence[ScheduledCommandEntry]) -> list[str]:
        """Insert PENDING entries, all or none; return their ids in order.

        A batch holding an id twice, or an id the store holds, raises ``ValueError`` and stores nothing.
        An entry whose ``idempotency_key`` the store already holds (in any status, until purged) is not inserted:
        the holder's id is returned in its place. Wakes listeners with the earliest due time inserted.
        """

    async def add_in_session(self, session: Any, entries: Sequence[ScheduledCommandEntry]) -> list[str]:
        """Like ``add``, but inside the caller's database transaction (``session``: a SQLAlchemy/SQLModel
        ``Session`` or ``AsyncSession``): the entries exist if and only if the caller commits.

        Raises:
            SessionNotSupportedError: this store does not live in a SQL database.
        """
        raise SessionNotSupportedError(self.description)

    @abstractmethod
    async def get(self, entry_id: str) -> ScheduledCommandEntry | None:
        """The entry, or ``None``."""

    @abstractmethod
    async def cancel(self, entry_id: str, *, now: datetime) -> ScheduledCommandEntry | None:
        """PENDING or WAITING -> CANCELLED (``completed_at = now``); the cancelled entry, or ``None`` if it was
        neither. Its WAITING dependants are updated in the same transaction (see ``add_dependants``)."""

    @abstractmethod
    async def cancel_by_correlation_id(self, correlation_id: str, *, now: datetime) -> list[ScheduledCommandEntry]:
        """Cancel every PENDING entry of that correlation id, atomically; the cancelled entries."""

    @abstractmethod
    async def requeue(self, entry_id: str, *, now: datetime) -> bool:
        """FAILED -> PENDING, due ``now``, ``retry_count`` 0, error kept until the next outcome. False otherwise."""

    @abstractmethod
    async def dismiss(self, entry_id: str, *, now: datetime) -> ScheduledCommandEntry | None:
        """FAILED -> CANCELLED (``completed_at = now``), atomically: the dead letter leaves the dead-letter queue.

        Its error message, ``retry_count``, attempt count and attempts are kept, and it is purged like any
        CANCELLED entry. A FAILED entry holds no lease: of a ``dismiss`` and a ``requeue`` (or two of either) racing
        on one entry, exactly one changes it. Returns the dismissed entry, or ``None`` (and nothing changed) when
        the entry is unknown or not FAILED.

        .. versionadded:: 0.3
        """

    async def request_cancel(self, entry_id: str, *, now: datetime) -> ScheduledCommandEntry | None:
        """Ask the worker holding a PROCESSING entry to cancel its attempt: set ``cancel_requested_at = now``
        (kept, not moved, when already set) and wake that worker through the finish listeners, in this process or
        another (the entry is reported as if it may have finished: the listener re-reads it).

        Changes nothing else: the entry stays PROCESSING until its worker ends it with ``cancel_claimed`` (or with
        another outcome, when the attempt finished first). Returns the entry, or ``None`` (nothing changed) when it
        is unknown or not PROCESSING.

        .. versionadded:: 0.6
        """
        raise NotImplementedError(f"{type(self).__name__} cannot cancel running entries")

    async def cancel_claimed(
        self, entry_id: str, lease_token: str, *, error_message: str, attempt: AttemptRecord
    ) -> bool:
        """PROCESSING -> CANCELLED (``completed_at = attempt.finished_at``), recording the (cancelled) attempt; not
        retried, ``retry_count`` unchanged. Fenced.

        .. versionadded:: 0.6
        """
        raise NotImplementedError(f"{type(self).__name__} cannot cancel running entries")

    # -- claiming and outcomes (fenced by lease_token) ---------------------------------------------------------

    @abstractmethod
    async def claim_due(
        self, *, now: datetime, limit: int, worker_id: str, lease_duration: timedelta, route: Route | None = None
    ) -> list[ScheduledCommandEntry]:
        """Atomically move up to ``limit`` due PENDING entries to PROCESSING under new leases and return them.

        Due means ``scheduled_for <= now``; order is priority descending, then ``scheduled_for``, then scheduling
        order. Each claimed entry gets ``lease_owner = worker_id``, a fresh ``lease_token``,
        ``lease_expires_at = now + lease_duration`` and ``started_at = now``. Two concurrent claims never return
        the same entry. Expired entries are claimed like any other: expiry is the caller's decision.

        Routing: only entries that ``route`` allows (its queues and command types; ``None``: every entry) are
        claimed, and none of a paused queue. An entry whose ``lock``
        another entry holds (PROCESSING) is not claimed, nor two entries of one lock in one claim.
        """

    @abstractmethod
    async def renew_leases(self, leases: Sequence[tuple[str, str]], *, until: datetime) -> set[str]:
        """Extend the leases ``(entry_id, lease_token)`` still held to ``until``; return the ids renewed."""

    @abstractmethod
    async def complete(
        self, entry_id: str, lease_token: str, *, result_payload: str | None, attempt: AttemptRecord
    ) -> bool:
        """PROCESSING -> COMPLETED (``completed_at = attempt.finished_at``), recording the attempt. Fenced."""

    @abstractmethod
    async def retry_later(
        self, entry_id: str, lease_token: str, *, due: datetime, error_message: str, attempt: AttemptRecord
    ) -> bool:
        """PROCESSING -> PENDING due at ``due``, ``retry_count + 1``, recording the failed attempt. Fenced."""

    @abstractmethod
    async def dead_letter(self, entry_id: str, lease_token: str, *, error_message: str, attempt: AttemptRecord) -> bool:
        """PROCESSING -> FAILED (``completed_at = attempt.finished_at``), ``retry_count + 1``, recording it. Fenced."""

    @abstractmethod
    async def expire(self, entry_id: str, lease_token: str, *, now: datetime) -> bool:
        """PROCESSING -> EXPIRED (``completed_at = now``), without an attempt. Fenced."""

    @abstractmethod
    async def release(self, entry_id: str, lease_token: str) -> bool:
        """PROCESSING -> PENDING, due as before, no attempt counted (a stopping worker gives it back). Fenced."""

    @abstractmethod
    async def reclaim_expired_leases(
        self, *, now: datetime, limit: int, worker_id: str, lease_duration: timedelta
    ) -> list[ReclaimedEntry]:
        """Take over up to ``limit`` PROCESSING entries whose lease expired at or before ``now``, atomically.

        Each gets a new lease for ``worker_id`` (so the dead worker's token no longer fences anything); the caller
        then records the lost attempt with ``retry_later`` or ``dead_letter``.
        """

    # -- queues (fleet-wide, stored; see stores/queues.py) -----------------------------------------------------

    async def set_queue_paused(self, name: str, paused: bool) -> None:
        """Pause (no entry of the queue is claimed; those running finish) or resume the queue ``name``.

        .. versionadded:: 0.5
        """
        raise UnsupportedFeatureError(self.description, "pausing queues", "use SqlStore or MemoryStore")

    async def set_queue_limits(self, name: str, limits: QueueLimits) -> None:
        """Store the fleet-wide limits of the queue ``name`` (both of them: a ``None`` clears that limit). The claim
        enforces them: at most ``max_running`` PROCESSING entries of the queue across the fleet, at most
        ``rate.count`` starts within any ``rate.per``.

        .. versionadded:: 0.5
        """
        raise UnsupportedFeatureError(self.description, "queue limits", "use SqlStore or MemoryStore")

    async def list_queues(self) -> list[QueueInfo]:
        """Every queue that holds a PENDING or PROCESSING entry, or is paused or limited, by name.

        .. versionadded:: 0.5
        """
        raise UnsupportedFeatureError(self.description, "listing queues", "use SqlStore or MemoryStore")

    async def next_start_at(self, now: datetime, queues: Collection[str] | None = None) -> datetime | None:
        """The earliest time after ``now`` at which a rate limited queue (of ``queues``; ``None``: every queue) that
        has spent its rate may start an entry again; ``None`` when none has (or the store keeps no rates). Workers
        whose claim came back empty sleep until then rather than polling for the next start.

        .. versionadded:: 0.5
        """
        return None

    # -- reading and housekeeping -----------------------------------------------------------------------------

    @abstractmethod
    async def get_attempts(self, entry_id: str) -> list[AttemptRecord]:
        """Every recorded attempt of the entry, oldest first."""

    @abstractmethod
    async def count_by_status(self) -> dict[ScheduledCommandStatus, int]:
        """How many entries are in each status (every status present, zero included)."""

    async def count_by_status_estimated(self, *, exact_up_to: int) -> dict[ScheduledCommandStatus, StatusCount]:
        """Entries per status (every status present), exact up to ``exact_up_to`` each: a status with more entries
        may be estimated (``exact`` False), so that the answer costs the same at any size. No write pays for it.

        By default every count is exact (``count_by_status``); SqlStore on PostgreSQL counts each status within the
        bound through its index and estimates a larger one from the table's statistics.

        .. versionadded:: 0.6
        """
        if exact_up_to < 0:
            raise ValueError(f"exact_up_to must not be negative, got {exact_up_to}")
        return {status: StatusCount(count) for status, count in (await self.count_by_status()).items()}

    @abstractmethod
    async def list_entries(
        self,
        *,
        status: ScheduledCommandStatus | None = None,
        command_type: str | None = None,
        correlation_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
        newest_first: bool = False,
        on_unreadable: Callable[[UnreadableEntryError], None] | None = None,
        where: EntryFilter | None = None,
    ) -> list[ScheduledCommandEntry]:
        """Entries matching every filter given, in scheduling order (or its reverse), one page at a time.

        ``where`` adds an ``EntryFilter`` (id prefix, error text, time ranges; .. versionadded:: 0.6); an argument
        contradicting it is a ``ValueError`` (``stores.filters.combined``). A store that cannot search efficiently
        raises ``UnsupportedFeatureError`` for a filter whose ``searches`` is true.

        A stored row that does not convert to an entry (written behind the library's back) is left out of the page
        and passed to ``on_unreadable`` (by default, logged), so one corrupt row never hides the others.
        """

    @abstractmethod
    async def next_due_at(self) -> datetime | None:
        """The earliest ``scheduled_for`` among PENDING entries, or ``None`` when none is pending."""

    @abstractmethod
    async def purge(
        self,
        *,
        older_than: datetime,
        statuses: Collection[ScheduledCommandStatus] = TERMINAL_STATUSES,
        limit: int | None = None,
    ) -> int:
        """Delete entries (and their attempts) in the given terminal statuses finished before ``older_than``.

        PENDING and PROCESSING are never purged, whatever ``statuses`` says. At most ``limit`` entries when given
        (call again until it returns less, to show progress). Returns how many were deleted.
        """

    # -- recurring schedules ----------------------------------------------------------------------------------

    @abstractmethod
    async def upsert_schedule(self, schedule: StoredSchedule) -> StoredSchedule:
        """Insert the schedule, or update the stored one of that name, atomically; return what is stored.

        An unknown name is stored as given. When the stored definition (``StoredSchedule.definition()``) equals
        the given one, nothing changes and the stored schedule is returned (same generation). Otherwise the
        definition and ``updated_at`` are replaced and the generation becomes the stored one plus 1; ``paused``,
        ``created_at`` and the bookkeeping times are kept.
        """

    @abstractmethod
    async def get_schedule(self, name: str) -> StoredSchedule | None:
        """The schedule of that name, or ``None``."""

    @abstractmethod
    async def list_schedules(self) -> list[StoredSchedule]:
        """Every schedule, by name."""

    @abstractmethod
    async def delete_schedule(self, name: str) -> bool:
        """Delete the schedule (not its occurrences); True if it existed."""

    @abstractmethod
    async def set_schedule_paused(self, name: str, paused: bool, *, now: datetime) -> StoredSchedule | None:
        """Set ``paused``, bump the generation and ``updated_at = now`` atomically (pausing also clears
        ``next_run_at``); the updated schedule, or ``None`` if there is none of that name."""

    @abstractmethod
    async def record_schedule_run(
        self, name: str, generation: int, *, last_run_at: datetime | None, next_run_at: datetime | None
    ) -> bool:
        """Bookkeeping: set ``next_run_at`` (and ``last_run_at`` when given) if the schedule is still at
        ``generation``; False (nothing changed) otherwise."""

    @abstractmethod
    async def cancel_occurrences(
        self, name: str, *, now: datetime, keep_generation: int | None = None
    ) -> list[ScheduledCommandEntry]:
        """Cancel the PENDING occurrences of schedule ``name`` atomically (``completed_at = now``), except those of
        those whose ``occurrence_generation`` is ``keep_generation`` when given. Returns the cancelled entries."""

    # -- the worker registry ----------------------------------------------------------------------------------

    @abstractmethod
    async def register_worker(self, worker: StoredWorker) -> None:
        """Store ``worker`` atomically, replacing any record of the same ``worker_id`` (a restart under one id).

        .. versionadded:: 0.5
        """

    @abstractmethod
    async def touch_worker(self, worker_id: str, *, now: datetime, state: StoredWorkerState | None = None) -> bool:
        """A heartbeat: set ``last_seen_at = now`` (and ``state`` when given; ``stopped_at = now`` when it is
        ``"stopped"``) atomically. False, and nothing stored, when no worker of that id is registered (it was
        forgotten: the caller registers again).

        .. versionadded:: 0.5
        """

    @abstractmethod
    async def list_workers(self) -> list[StoredWorker]:
        """Every registered worker, by ``started_at`` then ``worker_id``.

        .. versionadded:: 0.5
        """

    @abstractmethod
    async def forget_workers(self, *, seen_before: datetime) -> int:
        """Delete, atomically, every worker whose ``last_seen_at`` is before ``seen_before``; return how many.

        .. versionadded:: 0.5
        """

    # -- operator queries (defaults built on the methods above; stores may answer them more cheaply) -----------

    async def count_by_command_type(
        self, status: ScheduledCommandStatus, *, due_before: datetime | None = None, queue: str | None = None
    ) -> dict[str, int]:
        """How many entries of each command type are in ``status`` (types with none are left out); with
        ``due_before``, only those whose ``scheduled_for`` is earlier; with ``queue``, only that queue's
        (.. versionchanged:: 0.5)."""
        counts: dict[str, int] = {}
        async for entry in self._iterate(status=status):
            if (due_before is None or entry.scheduled_for < due_before) and (queue is None or entry.queue == queue):
                counts[entry.command_type] = counts.get(entry.command_type, 0) + 1
        return counts

    async def count_entries(self, where: EntryFilter | None = None, *, at_most: int | None = None) -> int:
        """How many entries match ``where``; with ``at_most``, counting stops past it: a result of ``at_most + 1``
        means "more than ``at_most``" (a bounded count, for filters no index answers).

        .. versionadded:: 0.6
        """
        if at_most is not None and at_most < 0:
            raise ValueError(f"at_most must not be negative, got {at_most}")
        wanted = where if where is not None else EntryFilter()
        # A store written before 0.6 takes no ``where``: asked with the arguments it knows when they say it all.
        filters: dict[str, Any] = (
            {"where": wanted}
            if wanted.searches
            else {"status": wanted.status, "command_type": wanted.command_type, "correlation_id": wanted.correlation_id}
        )
        counted, offset, page = 0, 0, 1_000
        while at_most is None or counted <= at_most:
            entries = await self.list_entries(**filters, limit=page, offset=offset)
            counted += len(entries)
            if len(entries) < page:
                break
            offset += page
        return counted if at_most is None else min(counted, at_most + 1)

    async def count_running(self, *, now: datetime) -> int:
        """How many entries a live worker holds: PROCESSING under a lease that has not expired at ``now``.

        A worker that dies leaves its entries PROCESSING until another one reclaims them once their lease has
        expired; with no worker left, nobody does. So this count, unlike ``count_by_status()[PROCESSING]``, falls
        to zero within one lease duration when the whole fleet is down.

        .. versionadded:: 0.4
        """
        running = 0
        async for entry in self._iterate(status=ScheduledCommandStatus.PROCESSING):
            if entry.lease_expires_at is not None and entry.lease_expires_at > now:
                running += 1
        return running

    async def read_gauges(self, *, now: datetime, exact_up_to: int | None = None) -> StoreReading:
        """``count_by_status()``, ``next_due_at()`` and ``count_running(now=now)`` read at one moment, so that the
        values agree with each other: an entry claimed between two separate reads would show as running and still
        overdue, or as stuck (PROCESSING but not running). ``SqlStore`` reads them in one snapshot; this default
        reads them one after the other, with nothing awaited in between on a store that keeps its entries in
        memory.

        With ``exact_up_to``, the counts are those of ``count_by_status_estimated(exact_up_to=...)``: a status with
        more entries may be estimated (listed in ``estimated``), so that the reading costs the same at any size.
        PROCESSING is always counted exactly: the stuck entries are its count minus the running ones. By default
        every count is exact (this default implementation is exact either way).

        Raises:
            ValueError: ``exact_up_to`` is negative.

        .. versionadded:: 0.5
        .. versionchanged:: 0.6
            ``exact_up_to`` and ``StoreReading.estimated``.
        """
        if exact_up_to is not None and exact_up_to < 0:
            raise ValueError(f"exact_up_to must not be negative, got {exact_up_to}")
        return StoreReading(await self.count_by_status(), await self.next_due_at(), await self.count_running(now=now))

    async def ids_starting_with(self, prefix: str, *, limit: int = 10) -> list[str]:
        """The ids of entries that start with ``prefix`` (case-sensitive, every status), in id order, at most
        ``limit`` of them: how operators name an entry by the first characters of its id.

        .. versionadded:: 0.4
        """
        return sorted([entry.id async for entry in self._iterate() if entry.id.startswith(prefix)])[:limit]

    async def count_purgeable(
        self, *, older_than: datetime, statuses: Collection[ScheduledCommandStatus] = TERMINAL_STATUSES
    ) -> int:
        """How many entries ``purge`` with the same arguments would delete."""
        total = 0
        for status in set(statuses) & TERMINAL_STATUSES:
            async for entry in self._iterate(status=status):
                if entry.completed_at is not None and entry.completed_at < older_than:
                    total += 1
        return total

    async def requeue_failed(self, *, now: datetime, command_type: str | None = None) -> list[str]:
        """Requeue every FAILED entry (of ``command_type`` when given); return the ids requeued."""
        failed = [
            entry.id async for entry in self._iterate(status=ScheduledCommandStatus.FAILED, command_type=command_type)
        ]
        return [entry_id for entry_id in failed if await self.requeue(entry_id, now=now)]

    async def count_finished_since(self, since: datetime, *, bucket: timedelta) -> list[FinishedCount]:
        """Throughput: how many entries reached each terminal status (COMPLETED, FAILED, EXPIRED, CANCELLED), by
        ``completed_at``, in consecutive buckets of length ``bucket`` starting at ``since``.

        Only non-empty buckets are returned, ordered by start then status. Entries finished before ``since`` are
        left out; the store decides nothing about "now" (entries stamped later than the caller's now count too).

        Raises:
            ValueError: ``bucket`` is not positive.

        .. versionadded:: 0.3
        """
        check_bucket(bucket)
        counts: dict[tuple[int, ScheduledCommandStatus], int] = {}
        for status in TERMINAL_STATUSES:
            async for entry in self._iterate(status=status):
                if entry.completed_at is not None and entry.completed_at >= since:
                    key = ((entry.completed_at - since) // bucket, status)
                    counts[key] = counts.get(key, 0) + 1
        return finished_counts(since, bucket, counts)

    async def list_occurrences(self, name: str, *, limit: int = 20) -> list[ScheduledCommandEntry]:
        """The newest ``limit`` entries of the recurring schedule ``name`` (``recurring_name``), in every status,
        newest first (reverse scheduling order). This default reads every entry; a store may use an index.

        .. versionadded:: 0.6
        """
        found = [entry async for entry in self._iterate() if entry.recurring_name == name]
        return found[::-1][:limit]

    async def count_outcomes(self, since: datetime, until: datetime, *, unit: timedelta) -> list[OutcomeCount]:
        """Outcomes over time: completed, retried, failed and expired (``stores/outcomes.py`` says when each one is
        counted) in ``[since, until)``, per ``unit`` (a minute or an hour) and command type; only non-zero counts,
        ordered by start, command type and outcome. This default reads every entry and its attempts; a store that
        keeps many answers from an aggregate.

        Raises:
            ValueError: ``unit`` is not a minute or an hour, a time is naive, or ``until`` precedes ``since``.

        .. versionadded:: 0.6
        """
        return await count_outcomes_by_scanning(self._iterate(), self.get_attempts, since, until, unit)

    async def _iterate(
        self, *, status: ScheduledCommandStatus | None = None, command_type: str | None = None, page: int = 1_000
    ) -> AsyncIterator[ScheduledCommandEntry]:
        offset = 0
        while True:
            entries = await self.list_entries(status=status, command_type=command_type, limit=page, offset=offset)
            for entry in entries:
                yield entry
            if len(entries) < page:
                return
            offset += page


def check_bucket(bucket: timedelta) -> None:
    """``count_finished_since``'s argument check, for store implementations."""
    if bucket <= timedelta(0):
        raise ValueError(f"bucket must be a positive duration, got {bucket!r}")


def finished_counts(
    since: datetime, bucket: timedelta, counts: dict[tuple[int, ScheduledCommandStatus], int]
) -> list[FinishedCount]:
    """``count_finished_since``'s answer from counts keyed by (bucket index, status), for store implementations."""
    return [
        FinishedCount(start=since + index * bucket, status=status, count=count)
        for (index, status), count in sorted(counts.items(), key=lambda item: (item[0][0], item[0][1].value))
        if count
    ]
