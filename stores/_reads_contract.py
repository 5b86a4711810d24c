"""The reading part of the store contract, a base of ``ScheduledCommandStore``: attempts, counts, pages of entries,
purging, and the operator queries, whose defaults are built on the abstract methods here (a store may answer them
more cheaply)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Collection
from datetime import datetime, timedelta
from typing import Any

from ._store_types import FinishedCount, StatusCount, StoreReading, check_bucket, finished_counts
from .entries import TERMINAL_STATUSES, AttemptRecord, ScheduledCommandEntry, ScheduledCommandStatus
from .errors import UnreadableEntryError
from .filters import EntryFilter, EntryPage, combined
from .outcomes import OutcomeCount, count_outcomes_by_scanning

__all__ = ["ReadingStore"]


class ReadingStore(ABC):
    """Reading and housekeeping (``stores.testing.StoreContract``; searches: ``SearchContract``; outcome counts:
    ``OutcomeCountContract``)."""

    #: Whether ``list_entries`` and ``count_entries`` answer searches (an ``EntryFilter`` whose ``searches`` is
    #: true); a store that answers only from its indexes refuses them with ``UnsupportedFeatureError``.
    #:
    #: .. versionadded:: 0.8
    supports_search: bool = True

    #: Whether ``count_outcomes`` keeps the counts of an hour that settled (and was asked for) after its entries are
    #: purged, as a rollup does; a store that counts from what it holds forgets them with the entries.
    #:
    #: .. versionadded:: 0.8
    keeps_outcome_counts: bool = False

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

        Checks the arguments and combines the filters into one, then asks ``list_matching``: a store implements
        that (a store written before 0.8 overrides this method instead).

        Raises:
            ValueError: ``limit`` or ``offset`` is negative, or an argument contradicts ``where``.
        """
        if limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must not be negative, got limit={limit}, offset={offset}")
        wanted = combined(where, status=status, command_type=command_type, correlation_id=correlation_id)
        page = EntryPage(limit, offset, newest_first, on_unreadable)
        return await self.list_matching(wanted, page)

    async def list_matching(self, where: EntryFilter, page: EntryPage) -> list[ScheduledCommandEntry]:
        """The page of ``list_entries``, its arguments checked: the entries matching ``where`` (``where.matches``
        states the rule), in scheduling order (``where.by_creation``: creation order) or its reverse
        (``page.newest_first``), from ``page.offset``, at most ``page.limit``; unreadable rows go to
        ``page.on_unreadable``. Every store implements it; it is not abstract only so that a store written before
        0.8, which overrides ``list_entries`` whole, still works.

        .. versionadded:: 0.8
        """
        raise NotImplementedError(f"{type(self).__name__} implements neither list_matching nor list_entries")

    @abstractmethod
    async def next_due_at(self) -> datetime | None:
        """The earliest ``scheduled_for`` among PENDING entries, or ``None`` when none is pending."""

    async def purge(
        self,
        *,
        older_than: datetime,
        statuses: Collection[ScheduledCommandStatus] = TERMINAL_STATUSES,
        limit: int | None = None,
    ) -> int:
        """Delete entries (and their attempts) in the given terminal statuses finished before ``older_than``.

        PENDING and PROCESSING are never purged, whatever ``statuses`` says. At most ``limit`` entries when given
        (call again until it returns less, to show progress). Returns how many were deleted. Asks
        ``purge_finished`` with the terminal statuses of ``statuses`` (nothing when there are none, or ``limit`` is
        not positive).
        """
        wanted = set(statuses)
        finished = frozenset(status for status in TERMINAL_STATUSES if status in wanted)
        if not finished or (limit is not None and limit <= 0):
            return 0
        return await self.purge_finished(older_than, finished, limit)

    async def purge_finished(
        self, older_than: datetime, statuses: frozenset[ScheduledCommandStatus], limit: int | None
    ) -> int:
        """``purge``, its arguments checked: delete, with their attempts, at most ``limit`` (``None``: every) entries
        in ``statuses`` (terminal ones, at least one) whose ``completed_at`` is before ``older_than``; how many.
        Every store implements it; it is not abstract only so that a store written before 0.8, which overrides
        ``purge`` whole, still works.

        .. versionadded:: 0.8
        """
        raise NotImplementedError(f"{type(self).__name__} implements neither purge_finished nor purge")

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
        means "more than ``at_most``" (a bounded count, for filters no index answers). Checks the arguments, then
        asks ``count_matching``.

        .. versionadded:: 0.6
        """
        if at_most is not None and at_most < 0:
            raise ValueError(f"at_most must not be negative, got {at_most}")
        return await self.count_matching(where if where is not None else EntryFilter(), at_most=at_most)

    async def count_matching(self, where: EntryFilter, *, at_most: int | None) -> int:
        """``count_entries``, its arguments checked. This default pages through ``list_entries``; a store may count
        more cheaply.

        .. versionadded:: 0.8
        """
        # A store written before 0.6 takes no ``where``: asked with the arguments it knows when they say it all.
        filters: dict[str, Any] = (
            {"where": where}
            if where.searches
            else {"status": where.status, "command_type": where.command_type, "correlation_id": where.correlation_id}
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
