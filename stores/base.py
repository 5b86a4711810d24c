"""``ScheduledCommandStore``: the narrow, decision-free persistence contract every store implements.

Stores persist; policy lives above them. The store never decides whether to retry, how long to wait or what a
failure means: the service in ``scheduling`` decides and calls one of these methods. Every method is atomic.

Fencing: a claim gives the entry a fresh ``lease_token``. Every method that ends or extends a claim takes that
token and changes nothing (returning ``False``) unless the entry is still PROCESSING under that very token, so a
worker that lost its lease can neither complete nor fail an entry that another worker now holds.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from ._audit_contract import AuditTrailStore
from ._claims_contract import ClaimStore
from ._dependencies_contract import DependencyStore
from ._listeners import StoreListeners
from ._queues_contract import QueueStore
from ._reads_contract import ReadingStore
from ._schedules_contract import ScheduleStore
from ._store_types import (
    DependantsCancelledListener,
    FinishedCount,
    FinishListener,
    ReclaimedEntry,
    StatusCount,
    StoreReading,
    WakeupListener,
    check_bucket,
    finished_counts,
)
from ._transitions import refuse_keyed_in_stream
from ._workers_contract import WorkerRegistryStore
from .entries import ScheduledCommandEntry, ScheduledCommandStatus
from .errors import SessionNotSupportedError

__all__ = [
    "DependantsCancelledListener",
    "FinishListener",
    "FinishedCount",
    "ReclaimedEntry",
    "ScheduledCommandStore",
    "StatusCount",
    "StoreReading",
    "WakeupListener",
    "check_bucket",
    "finished_counts",
]


class ScheduledCommandStore(
    StoreListeners,
    ClaimStore,
    ReadingStore,
    QueueStore,
    ScheduleStore,
    WorkerRegistryStore,
    DependencyStore,
    AuditTrailStore,
    ABC,
):
    """The abstract store. Implementations: ``MemoryStore``, ``SqlStore``; every one passes the contract suite.

    A store opens itself on first use. ``async with store:`` or ``open()`` opens it at once, to fail fast (``open()``
    is idempotent); whoever opens a store that way closes it (``close()``, or leaving the ``async with``). A
    ``ScheduledCommandService`` that finds its store not opened that way opens it and closes it when it stops.

    Its methods come in families, each a base class in a module of its own: this class holds the lifecycle and
    scheduling (add, get, cancel, requeue, dismiss); ``ClaimStore`` claims and their fenced outcomes;
    ``ReadingStore`` reads, counts and purges (with defaults for the operator queries); ``ScheduleStore`` recurring
    schedules; ``WorkerRegistryStore`` the worker registry; ``AuditTrailStore`` the audit trail; ``QueueStore`` and
    ``DependencyStore`` optional features (a store without them refuses with ``UnsupportedFeatureError``);
    ``StoreListeners`` the wake-up and finish listeners every store inherits. ``docs/stores.md`` ("Writing a custom
    store") lists what a custom store implements, and ``stores.testing`` checks it.

    .. versionadded:: 0.1
    """

    #: Whether entries outlive the process and are seen by other processes (a worker elsewhere may run them).
    #: ``CommandScheduler.schedule()`` refuses command classes that other processes cannot import on such a store.
    durable: bool = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A concrete store implements each hook of ``_HOOKS`` or every method it replaced: those hooks are not
        abstract (a store written before 0.8 overrides the older methods instead), so without this check a store
        implementing neither would construct and fail only at its first outcome, after the handler ran."""
        super().__init_subclass__(**kwargs)
        if any(getattr(getattr(cls, name, None), "__isabstractmethod__", False) for name in dir(cls)):
            return  # still abstract: ABCMeta refuses to construct it anyway
        for hook, older in _HOOKS:
            if _inherited(cls, hook) and any(_inherited(cls, name) for name in older):
                missing = [name for name in older if _inherited(cls, name)]
                raise TypeError(
                    f"{cls.__name__} implements neither {hook}() nor the methods it replaces ({', '.join(older)}): "
                    f"implement {hook}() (or, as before 0.8, {', '.join(missing)})"
                )

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

    # -- scheduling -------------------------------------------------------------------------------------------

    @abstractmethod
    async def add(self, entries: Sequence[ScheduledCommandEntry]) -> list[str]:
        """Insert PENDING entries, all or none; return their ids in order.

        A batch holding an id twice, or an id the store holds, raises ``ValueError`` and stores nothing.
        An entry whose ``idempotency_key`` the store already holds (in any status, until purged) is not inserted:
        the holder's id is returned in its place. Wakes listeners with the earliest due time inserted.
        """

    async def add_streamed(self, chunks: AsyncIterable[Sequence[ScheduledCommandEntry]]) -> list[str]:
        """``add`` of the entries ``chunks`` yields, in order, as one batch (all or none), for entries without an
        idempotency key; their ids in order. An error raised by ``chunks`` stores nothing and propagates.

        The caller builds the next chunk while a store that can overrides this to write the previous one
        (PostgreSQL: one ``COPY``, the server inserting while the client builds); this default gathers every
        chunk, then calls ``add``.

        Raises:
            ValueError: an entry with an ``idempotency_key`` (naming it), an id twice, or an id the store holds;
                nothing stored.

        .. versionadded:: 0.8
        """
        entries: list[ScheduledCommandEntry] = []
        async for chunk in chunks:
            refuse_keyed_in_stream(chunk)
            entries.extend(chunk)
        return await self.add(entries) if entries else []

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

    async def requeue_failed(self, *, now: datetime, command_type: str | None = None) -> list[str]:
        """Requeue every FAILED entry (of ``command_type`` when given); return the ids requeued."""
        failed = [
            entry.id async for entry in self._iterate(status=ScheduledCommandStatus.FAILED, command_type=command_type)
        ]
        return [entry_id for entry_id in failed if await self.requeue(entry_id, now=now)]


#: The contract's hooks that are not abstract, with the methods a store written before 0.8 overrides instead.
_HOOKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("end_claim", ("complete", "retry_later", "dead_letter", "expire", "release")),
    ("list_matching", ("list_entries",)),
    ("purge_finished", ("purge",)),
)


def _inherited(cls: type, name: str) -> bool:
    """Whether ``cls`` takes ``name`` from the contract's own default."""
    return getattr(cls, name) is getattr(ScheduledCommandStore, name)
