"""``MemoryStore``: everything in process memory. For tests and single-process use; lost on exit.

Claims never scan: PENDING entries sit in a heap by due time; a claim moves the due ones into a second heap ordered
by priority, due time and scheduling order, and pops from it. Heap items carry a version, so an entry that changed
since it was pushed (cancelled, claimed, rescheduled) is skipped when popped instead of being searched for.

Every method runs without awaiting in between, so each is atomic among asyncio tasks on one loop.
"""

from __future__ import annotations

import heapq
import itertools
import uuid
from collections.abc import Collection, Iterator, Sequence
from datetime import datetime, timedelta

from ._memory_audit import MemoryAudit
from ._memory_dependencies import MemoryDependencies
from ._memory_queues import MemoryQueues
from ._memory_schedules import MemorySchedules
from ._memory_workers import MemoryWorkers
from ._transitions import CANCEL, DISMISS, REQUEST_CANCEL, REQUEUE, AddBatch, ClaimEnd
from .base import FinishedCount, ReclaimedEntry, ScheduledCommandStore, check_bucket, finished_counts
from .entries import TERMINAL_STATUSES, AttemptRecord, ScheduledCommandEntry, ScheduledCommandStatus
from .filters import EntryFilter, EntryPage
from .queues import QueueInfo, QueueLimits, Route

__all__ = ["MemoryStore"]

PENDING = ScheduledCommandStatus.PENDING
PROCESSING = ScheduledCommandStatus.PROCESSING


class MemoryStore(MemoryDependencies, MemorySchedules, MemoryWorkers, MemoryAudit, ScheduledCommandStore):
    """An in-memory ``ScheduledCommandStore``: for tests and single-process scripts; its entries are lost on exit.

    .. versionadded:: 0.1
    """

    durable = False
    supports_dependencies = True

    def __init__(self) -> None:
        super().__init__()
        self._entries: dict[str, ScheduledCommandEntry] = {}
        self._order: dict[str, int] = {}  # scheduling order, for FIFO among equals
        self._version: dict[str, int] = {}
        # One counter for every entry, so an id added again after a purge never meets its old heap items' versions.
        self._versions = itertools.count(1)
        self._sequence = itertools.count()
        self._delayed: list[tuple[datetime, int, int, str]] = []  # (due, order, version, id)
        self._ready: list[tuple[int, datetime, int, int, str]] = []  # (-priority, due, order, version, id)
        self._idempotency: dict[str, str] = {}
        self._by_correlation: dict[str, set[str]] = {}
        self._by_recurring: dict[str, set[str]] = {}
        self._processing: set[str] = set()
        self._queues = MemoryQueues()
        self._attempts: dict[str, list[AttemptRecord]] = {}
        self._counts: dict[ScheduledCommandStatus, int] = dict.fromkeys(ScheduledCommandStatus, 0)
        # Lease tokens need only be unique within this store: a random prefix and a counter (uuid4 costs a syscall).
        self._token_prefix = uuid.uuid4().hex[:12]
        self._tokens = itertools.count(1)

    # -- internal bookkeeping ---------------------------------------------------------------------------------

    def _put(self, entry: ScheduledCommandEntry) -> None:
        """Store a new snapshot of an entry, keeping counts, indexes and heaps in step."""
        previous = self._entries.get(entry.id)
        if previous is not None:
            self._counts[previous.status] -= 1
        self._counts[entry.status] += 1
        self._queues.track(previous, entry)
        self._entries[entry.id] = entry
        version = next(self._versions)
        self._version[entry.id] = version
        if entry.status is PROCESSING:
            self._processing.add(entry.id)
        else:
            self._processing.discard(entry.id)
        if entry.status is PENDING:
            heapq.heappush(self._delayed, (entry.scheduled_for, self._order[entry.id], version, entry.id))
        elif entry.status in TERMINAL_STATUSES:
            self._notify_finished((entry.id,))
            if entry.id in self._dependants:
                self._resolve_dependants(entry)

    def _new_token(self) -> str:
        return f"{self._token_prefix}-{next(self._tokens)}"

    def _is_current(self, entry_id: str, version: int) -> bool:
        return self._version.get(entry_id) == version and self._entries[entry_id].status is PENDING

    def _held(self, entry_id: str, lease_token: str) -> ScheduledCommandEntry | None:
        entry = self._entries.get(entry_id)
        if entry is None or entry.status is not PROCESSING or entry.lease_token != lease_token:
            return None
        return entry

    def _record(self, attempt: AttemptRecord, entry_id: str) -> int:
        """Keep the attempt; return the entry's new attempt count."""
        attempts = self._attempts.setdefault(entry_id, [])
        attempts.append(attempt)
        return len(attempts)

    def _promote_due(self, now: datetime) -> None:
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            due, order, version, entry_id = heapq.heappop(delayed)
            if self._is_current(entry_id, version):
                priority = self._entries[entry_id].priority
                heapq.heappush(self._ready, (-priority, due, order, version, entry_id))

    # -- scheduling -------------------------------------------------------------------------------------------

    async def add(self, entries: Sequence[ScheduledCommandEntry]) -> list[str]:
        batch = AddBatch.of(entries, held=self._entries.__contains__)
        inserted = {e.id for e in batch.plain}
        inserted.update(e.id for e in batch.keyed if e.idempotency_key not in self._idempotency)
        earliest: datetime | None = None
        for entry in entries:
            if entry.id not in inserted:
                continue
            self._order[entry.id] = next(self._sequence)
            self._put(entry.model_copy(update={"status": PENDING}) if entry.status is not PENDING else entry)
            if entry.idempotency_key is not None:
                self._idempotency[entry.idempotency_key] = entry.id
            if entry.correlation_id is not None:
                self._by_correlation.setdefault(entry.correlation_id, set()).add(entry.id)
            if entry.recurring_name is not None:
                self._by_recurring.setdefault(entry.recurring_name, set()).add(entry.id)
            if earliest is None or entry.scheduled_for < earliest:
                earliest = entry.scheduled_for
        ids = batch.ids(self._idempotency)
        if earliest is not None:
            self._notify_wakeup(earliest)
        return ids

    async def get(self, entry_id: str) -> ScheduledCommandEntry | None:
        return self._entries.get(entry_id)

    async def ids_starting_with(self, prefix: str, *, limit: int = 10) -> list[str]:
        return sorted(entry_id for entry_id in self._entries if entry_id.startswith(prefix))[:limit]

    async def cancel(self, entry_id: str, *, now: datetime) -> ScheduledCommandEntry | None:
        entry = self._entries.get(entry_id)
        if entry is None or entry.status not in CANCEL.sources:
            return None
        cancelled = entry.model_copy(update=CANCEL.changes(now))
        self._put(cancelled)
        return cancelled

    async def request_cancel(self, entry_id: str, *, now: datetime) -> ScheduledCommandEntry | None:
        entry = self._entries.get(entry_id)
        if entry is None or entry.status is not REQUEST_CANCEL.source:
            return None
        if entry.cancel_requested_at is None:
            entry = entry.model_copy(update=REQUEST_CANCEL.changes(now))
            self._put(entry)
        self._notify_finished((entry_id,))
        return entry

    async def cancel_by_correlation_id(self, correlation_id: str, *, now: datetime) -> list[ScheduledCommandEntry]:
        cancelled: list[ScheduledCommandEntry] = []
        for entry_id in sorted(self._by_correlation.get(correlation_id, ()), key=self._order.__getitem__):
            entry = await self.cancel(entry_id, now=now)
            if entry is not None:
                cancelled.append(entry)
        return cancelled

    async def requeue(self, entry_id: str, *, now: datetime) -> bool:
        entry = self._entries.get(entry_id)
        if entry is None or entry.status is not REQUEUE.source:
            return False
        self._put(entry.model_copy(update=REQUEUE.changes(now)))
        self._notify_wakeup(now)
        return True

    async def dismiss(self, entry_id: str, *, now: datetime) -> ScheduledCommandEntry | None:
        entry = self._entries.get(entry_id)
        if entry is None or entry.status is not DISMISS.source:
            return None
        # A FAILED entry sits in no heap, so only the snapshot, counts and version change.
        dismissed = entry.model_copy(update=DISMISS.changes(now))
        self._put(dismissed)
        return dismissed

    # -- claiming and outcomes --------------------------------------------------------------------------------

    async def claim_due(
        self, *, now: datetime, limit: int, worker_id: str, lease_duration: timedelta, route: Route | None = None
    ) -> list[ScheduledCommandEntry]:
        self._promote_due(now)
        claimed: list[ScheduledCommandEntry] = []
        ready = self._ready
        lease_expires_at = now + lease_duration
        not_due: list[tuple[datetime, int, int, str]] = []
        passed: list[tuple[int, datetime, int, int, str]] = []  # due, but not for this claim: back in the heap after
        locks: set[str] = set()
        while ready and len(claimed) < limit:
            _, due, order, version, entry_id = item = heapq.heappop(ready)
            if not self._is_current(entry_id, version):
                continue
            if due > now:  # promoted by a claim with a later ``now``: not due for this one
                not_due.append((due, order, version, entry_id))
                continue
            entry = self._entries[entry_id]
            if not self._queues.take(entry, route, locks, now):
                passed.append(item)
                continue
            entry = entry.model_copy(
                update={
                    "status": PROCESSING,
                    "started_at": now,
                    "lease_owner": worker_id,
                    "lease_token": self._new_token(),
                    "lease_expires_at": lease_expires_at,
                }
            )
            self._put(entry)
            claimed.append(entry)
        for delayed in not_due:
            heapq.heappush(self._delayed, delayed)
        for skipped in passed:
            heapq.heappush(ready, skipped)
        return claimed

    async def renew_leases(self, leases: Sequence[tuple[str, str]], *, until: datetime) -> set[str]:
        renewed: set[str] = set()
        for entry_id, token in leases:
            entry = self._held(entry_id, token)
            if entry is not None:
                self._put(entry.model_copy(update={"lease_expires_at": until}))
                renewed.add(entry_id)
        return renewed

    async def end_claim(self, entry_id: str, lease_token: str, end: ClaimEnd) -> datetime | None:
        entry = self._held(entry_id, lease_token)
        if entry is None:
            return None
        changes = end.changes()
        if end.attempt is not None:
            changes["attempt_count"] = self._record(end.attempt, entry_id)
            changes["started_at"] = end.attempt.started_at  # the attempt's own start, not the claim's
        elif entry.attempt_count == 0:
            changes["started_at"] = None  # never ran (expired or released before its first attempt)
        if end.counts_failure:
            changes["retry_count"] = entry.retry_count + 1
        ended = entry.model_copy(update={"lease_owner": None, "lease_token": None, "lease_expires_at": None, **changes})
        self._put(ended)
        return ended.scheduled_for

    async def reclaim_expired_leases(
        self, *, now: datetime, limit: int, worker_id: str, lease_duration: timedelta
    ) -> list[ReclaimedEntry]:
        expired = sorted(
            (
                e
                for e in map(self._entries.__getitem__, self._processing)
                if e.lease_expires_at and e.lease_expires_at <= now
            ),
            key=lambda e: (e.lease_expires_at, self._order[e.id]),
        )[:limit]
        reclaimed: list[ReclaimedEntry] = []
        for entry in expired:
            taken = entry.model_copy(
                update={
                    "lease_owner": worker_id,
                    "lease_token": self._new_token(),
                    "lease_expires_at": now + lease_duration,
                }
            )
            self._put(taken)
            reclaimed.append(ReclaimedEntry(taken, entry.lease_owner, entry.lease_expires_at))
        return reclaimed

    # -- queues -----------------------------------------------------------------------------------------------

    async def set_queue_paused(self, name: str, paused: bool) -> None:
        self._queues.set_paused(name, paused)
        due = None if paused else await self.next_due_at()
        if due is not None:  # its entries may be due: wake the workers
            self._notify_wakeup(due)

    async def set_queue_limits(self, name: str, limits: QueueLimits) -> None:
        self._queues.set_limits(name, limits)
        if (due := await self.next_due_at()) is not None:  # a raised limit may let due entries run: wake workers
            self._notify_wakeup(due)

    async def list_queues(self) -> list[QueueInfo]:
        return self._queues.infos()

    async def next_start_at(self, now: datetime, queues: Collection[str] | None = None) -> datetime | None:
        return self._queues.next_start_at(now, queues)

    # -- recurring schedules ----------------------------------------------------------------------------------

    async def cancel_occurrences(
        self, name: str, *, now: datetime, keep_generation: int | None = None
    ) -> list[ScheduledCommandEntry]:
        cancelled: list[ScheduledCommandEntry] = []
        for entry_id in sorted(self._by_recurring.get(name, ()), key=self._order.__getitem__):
            if keep_generation is not None and self._entries[entry_id].occurrence_generation == keep_generation:
                continue
            entry = await self.cancel(entry_id, now=now)
            if entry is not None:
                cancelled.append(entry)
        return cancelled

    # -- reading and housekeeping -----------------------------------------------------------------------------

    async def get_attempts(self, entry_id: str) -> list[AttemptRecord]:
        return list(self._attempts.get(entry_id, ()))

    async def count_by_status(self) -> dict[ScheduledCommandStatus, int]:
        return dict(self._counts)

    async def list_matching(self, where: EntryFilter, page: EntryPage) -> list[ScheduledCommandEntry]:
        return list(itertools.islice(self._matching(where, page.newest_first), page.offset, page.offset + page.limit))

    async def count_matching(self, where: EntryFilter, *, at_most: int | None) -> int:
        limit = None if at_most is None else at_most + 1
        return sum(1 for _ in itertools.islice(self._matching(where, False), limit))

    def _matching(self, wanted: EntryFilter, newest_first: bool) -> Iterator[ScheduledCommandEntry]:
        if wanted.correlation_id is not None:
            candidates: Collection[str] = self._by_correlation.get(wanted.correlation_id, set())
        else:
            candidates = self._entries.keys()
        if wanted.by_creation:  # see EntryFilter.by_creation
            ordered = sorted(
                candidates, key=lambda i: (self._entries[i].created_at, self._order[i]), reverse=newest_first
            )
        else:
            ordered = sorted(candidates, key=self._order.__getitem__, reverse=newest_first)
        return (entry for entry in map(self._entries.__getitem__, ordered) if wanted.matches(entry))

    async def count_finished_since(self, since: datetime, *, bucket: timedelta) -> list[FinishedCount]:
        check_bucket(bucket)
        counts: dict[tuple[int, ScheduledCommandStatus], int] = {}
        for entry in self._entries.values():
            if entry.status in TERMINAL_STATUSES and entry.completed_at is not None and entry.completed_at >= since:
                key = ((entry.completed_at - since) // bucket, entry.status)
                counts[key] = counts.get(key, 0) + 1
        return finished_counts(since, bucket, counts)

    async def count_running(self, *, now: datetime) -> int:
        return sum(1 for entry_id in self._processing if _holds_live_lease(self._entries[entry_id], now))

    async def next_due_at(self) -> datetime | None:
        earliest: datetime | None = None
        ready = self._ready
        while ready and not self._is_current(ready[0][4], ready[0][3]):
            heapq.heappop(ready)
        if ready:
            earliest = min(item[1] for item in ready if self._is_current(item[4], item[3]))
        delayed = self._delayed
        while delayed and not self._is_current(delayed[0][3], delayed[0][2]):
            heapq.heappop(delayed)
        if delayed and (earliest is None or delayed[0][0] < earliest):
            earliest = delayed[0][0]
        return earliest

    async def purge_finished(
        self, older_than: datetime, statuses: frozenset[ScheduledCommandStatus], limit: int | None
    ) -> int:
        doomed = [
            entry
            for entry in self._entries.values()
            if entry.status in statuses and entry.completed_at is not None and entry.completed_at < older_than
        ][:limit]
        for entry in doomed:
            self._counts[entry.status] -= 1
            del self._entries[entry.id], self._order[entry.id], self._version[entry.id]
            self._attempts.pop(entry.id, None)
            self._forget_dependencies(entry.id)
            if entry.idempotency_key is not None and self._idempotency.get(entry.idempotency_key) == entry.id:
                del self._idempotency[entry.idempotency_key]
            if entry.correlation_id is not None:
                self._by_correlation[entry.correlation_id].discard(entry.id)
                if not self._by_correlation[entry.correlation_id]:
                    del self._by_correlation[entry.correlation_id]
            if entry.recurring_name is not None:
                self._by_recurring[entry.recurring_name].discard(entry.id)
                if not self._by_recurring[entry.recurring_name]:
                    del self._by_recurring[entry.recurring_name]
        return len(doomed)


def _holds_live_lease(entry: ScheduledCommandEntry, now: datetime) -> bool:
    return entry.lease_expires_at is not None and entry.lease_expires_at > now
