"""What operators ask of a store, in one place: the CLI and the web dashboard both answer from here.

Every function takes an opened ``ScheduledCommandStore`` and returns plain pydantic models whose JSON form
(``model_dump(mode="json")``) is the stable ``--json`` output of the CLI.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from pydantic import BaseModel

from stores.base import ScheduledCommandStore
from stores.entries import TERMINAL_STATUSES, ScheduledCommandEntry, ScheduledCommandStatus
from stores.errors import UnreadableEntryError
from stores.filters import EntryFilter, combined

from . import _cancels
from ._admin_outcomes import RANGES as OUTCOME_RANGES
from ._admin_outcomes import OutcomeBucket, OutcomeHistory, OutcomeRange, TypeFailures, outcome_history
from ._admin_queues import QueueList, limit_queue, queue_info, queue_list, set_queue_paused
from ._admin_recurring import (
    OCCURRENCES_SHOWN,
    PauseResult,
    RecurringList,
    RecurringScheduleView,
    RemoveResult,
    ResumeResult,
    RunNowResult,
    ScheduleOccurrences,
    pause_schedule,
    recurring_list,
    remove_schedule,
    resume_schedule,
    run_schedule_now,
    schedule_occurrences,
)
from ._durations import MAX_DURATION, parse_duration
from ._entry_detail import EntryDetail, entry_detail
from .workers import count_stuck, waiting_by_queue, waiting_for_a_worker, workers_by_state

if TYPE_CHECKING:
    from .scheduler import CommandScheduler

__all__ = [
    "CANCELLABLE",
    "CANCELLABLE_RUNNING",
    "COUNT_LIMIT",
    "EXACT_COUNT_LIMIT",
    "MAX_DURATION",
    "OCCURRENCES_SHOWN",
    "OUTCOME_RANGES",
    "CancelResult",
    "EntryDetail",
    "EntryPage",
    "MatchCount",
    "OutcomeBucket",
    "OutcomeHistory",
    "OutcomeRange",
    "PauseResult",
    "PurgeResult",
    "QueueList",
    "RecurringList",
    "RecurringScheduleView",
    "Refusal",
    "RemoveResult",
    "RequeueResult",
    "ResumeResult",
    "RunNowResult",
    "ScheduleOccurrences",
    "StoreOverview",
    "Throughput",
    "ThroughputBucket",
    "TypeFailures",
    "UnreadableRow",
    "cancel_entry",
    "count_matching",
    "entry_detail",
    "explain_refusal",
    "limit_queue",
    "list_page",
    "outcome_history",
    "overview",
    "parse_duration",
    "pause_schedule",
    "purge",
    "queue_info",
    "queue_list",
    "recurring_list",
    "remove_schedule",
    "requeue_entry",
    "requeue_failed",
    "resume_schedule",
    "run_schedule_now",
    "schedule_occurrences",
    "set_queue_paused",
    "throughput",
    "waiting_for_a_worker",
]

#: The throughput window of ``overview``: the current minute and the 59 before it, one bucket per minute.
THROUGHPUT_BUCKET = timedelta(minutes=1)
THROUGHPUT_BUCKETS = 60


class ThroughputBucket(BaseModel):
    """Entries finished in one minute."""

    start: datetime
    #: Per terminal status (COMPLETED, FAILED, EXPIRED, CANCELLED), every one present.
    counts: dict[str, int]


class Throughput(BaseModel):
    """Entries that reached a terminal status, per minute, over the last hour (by ``completed_at``)."""

    #: The start of the first bucket: the start of the minute 59 minutes before the current one.
    since: datetime
    bucket_seconds: float
    #: Per terminal status over the whole window, every one present.
    totals: dict[str, int]
    #: One per minute, oldest first, empty minutes included; the last one is the current (partial) minute.
    buckets: list[ThroughputBucket]


class StoreOverview(BaseModel):
    """``status``: the health of the queue at a glance."""

    store: str
    now: datetime
    #: Entries per status, every status present: exact up to ``EXACT_COUNT_LIMIT``, a larger one possibly an
    #: estimate from the database's statistics (``counts_exact``), so that the overview costs the same at any size.
    counts: dict[str, int]
    #: Per status, whether its count is exact (False: an estimate, shown as "about").
    counts_exact: dict[str, bool] = {}
    total: int
    #: Whether ``total`` is exact (every count is).
    total_exact: bool = True
    #: The earliest due time among PENDING entries, or None.
    next_due_at: datetime | None
    #: When that earliest PENDING entry is already overdue: its due time and how late it is, in seconds.
    oldest_overdue_at: datetime | None
    oldest_overdue_lag_seconds: float | None
    #: Entries held by a gone worker: PROCESSING under an expired lease, not yet recovered by a live worker.
    stuck: int = 0
    #: Registered workers per state (running, stopping, gone), every state present.
    workers: dict[str, int] = {}
    #: Dead letters (FAILED) per command type.
    dead_letters_by_type: dict[str, int]
    #: PENDING entries per command type that seem to wait for a worker that handles it (``waiting_for_a_worker``).
    waiting_for_worker_by_type: dict[str, int] = {}
    #: The same per queue: queue -> command type -> entries no live worker would claim (``waiting_by_queue``).
    waiting_for_worker_by_queue: dict[str, dict[str, int]] = {}
    #: Entries finished per minute over the last hour.
    throughput: Throughput


class UnreadableRow(BaseModel):
    """A stored row that does not convert to an entry (written behind the library's back): which, and why."""

    #: The row's position in scheduling order (always readable), and its id if that is readable.
    seq: int | None
    id: str | None
    column: str
    #: The stored value, as Python shows it.
    value: str
    problem: str
    #: One line: ``column scheduled_for holds '-infinity' (Input should be a valid datetime)``.
    message: str

    @classmethod
    def of(cls, error: UnreadableEntryError) -> UnreadableRow:
        return cls(
            seq=error.seq if isinstance(error.seq, int) else None,
            id=error.entry_id,
            column=error.column,
            value=repr(error.value),
            problem=error.problem,
            message=error.description,
        )


class EntryPage(BaseModel):
    """``list``: one page of entries, newest first."""

    entries: list[ScheduledCommandEntry]
    #: Rows of this page that cannot be read: shown as corrupt, one line each; the others are listed as usual.
    unreadable: list[UnreadableRow] = []
    limit: int
    offset: int
    #: The offset of the next page, or None on the last one.
    next_offset: int | None
    #: How many entries match the filter: exactly, or (``total_exact`` false) more than this many, counting having
    #: stopped there (``COUNT_LIMIT``; a filter no index answers cannot be counted fast at every size).
    total: int | None = None
    total_exact: bool = True
    #: ``total`` is an estimate from the database's statistics ("about"; ``total_exact`` is false): no filter, or a
    #: status alone, matching more than ``COUNT_LIMIT`` entries on PostgreSQL.
    total_estimated: bool = False


class RequeueResult(BaseModel):
    """``requeue``: the ids moved from FAILED back to PENDING."""

    requeued: list[str]


class CancelResult(BaseModel):
    """``cancel``: whether the entry was cancelled (PENDING), dismissed (FAILED) or its attempt cancelled (running)."""

    id: str
    cancelled: bool
    #: PROCESSING, and its worker was asked to cancel the attempt: it ends CANCELLED unless the attempt finished first.
    running: bool = False


class Refusal(BaseModel):
    """Why an operation on one entry did nothing: it is unknown, or not in the status the operation needs."""

    id: str
    #: The entry's current status, or None when there is no such entry.
    status: str | None
    #: ``cannot <action> <id>: no such entry`` or ``cannot <action> <id>: it is <status>, not <needed>`` (several
    #: needed statuses joined with "or": ``not PENDING or WAITING or FAILED``).
    message: str


class PurgeResult(BaseModel):
    older_than: datetime
    statuses: list[str]
    dry_run: bool
    #: Deleted, or (dry run) that would be deleted.
    count: int


def _by_type(by_queue: dict[str, dict[str, int]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for waiting in by_queue.values():
        for command_type, n in waiting.items():
            totals[command_type] = totals.get(command_type, 0) + n
    return dict(sorted(totals.items()))


#: The overview counts each status exactly up to this many entries; a larger status may be estimated.
EXACT_COUNT_LIMIT = 10_000


async def overview(store: ScheduledCommandStore, now: datetime, *, exact_up_to: int | None = None) -> StoreOverview:
    """The health of the store at ``now``; each status counted exactly up to ``exact_up_to`` (see ``counts_exact``)."""
    bound = EXACT_COUNT_LIMIT if exact_up_to is None else exact_up_to
    estimated = await store.count_by_status_estimated(exact_up_to=bound)
    counts = {status: c.count for status, c in estimated.items()}
    next_due = await store.next_due_at()
    overdue = next_due if next_due is not None and next_due <= now else None
    waiting = await waiting_by_queue(store, now)
    return StoreOverview(
        store=store.description,
        now=now,
        counts={status.value: count for status, count in counts.items()},
        counts_exact={status.value: c.exact for status, c in estimated.items()},
        total=sum(counts.values()),
        total_exact=all(c.exact for c in estimated.values()),
        next_due_at=next_due,
        oldest_overdue_at=overdue,
        oldest_overdue_lag_seconds=(now - overdue).total_seconds() if overdue is not None else None,
        stuck=await count_stuck(store, now, processing=counts.get(ScheduledCommandStatus.PROCESSING, 0)),
        workers=await workers_by_state(store, now),
        dead_letters_by_type=dict(sorted((await store.count_by_command_type(ScheduledCommandStatus.FAILED)).items())),
        waiting_for_worker_by_type=_by_type(waiting),
        waiting_for_worker_by_queue=waiting,
        throughput=await throughput(store, now),
    )


async def throughput(store: ScheduledCommandStore, now: datetime) -> Throughput:
    """Entries finished per minute and terminal status in the current minute and the 59 before it."""
    current = now.replace(second=0, microsecond=0)
    since = current - (THROUGHPUT_BUCKETS - 1) * THROUGHPUT_BUCKET
    terminal = sorted(status.value for status in TERMINAL_STATUSES)
    buckets = [
        ThroughputBucket(start=since + n * THROUGHPUT_BUCKET, counts=dict.fromkeys(terminal, 0))
        for n in range(THROUGHPUT_BUCKETS)
    ]
    totals = dict.fromkeys(terminal, 0)
    for finished in await store.count_finished_since(since, bucket=THROUGHPUT_BUCKET):
        index = (finished.start - since) // THROUGHPUT_BUCKET
        if 0 <= index < THROUGHPUT_BUCKETS:  # entries stamped after ``now`` (clock skew) are left out
            buckets[index].counts[finished.status.value] += finished.count
            totals[finished.status.value] += finished.count
    return Throughput(since=since, bucket_seconds=THROUGHPUT_BUCKET.total_seconds(), totals=totals, buckets=buckets)


async def list_page(
    store: ScheduledCommandStore,
    *,
    status: ScheduledCommandStatus | None = None,
    command_type: str | None = None,
    correlation_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
    where: EntryFilter | None = None,
    count: bool = True,
) -> EntryPage:
    """One page of entries matching the filters, newest first, with how many match (``count``; see ``count_matching``).

    Raises:
        UnsupportedFeatureError: the store cannot search by a field of ``where`` (RedisStore: id prefix, error text,
            time ranges).
    """
    wanted = combined(where, status=status, command_type=command_type, correlation_id=correlation_id)
    unreadable: list[UnreadableRow] = []
    reporting: dict[str, Any] = {}
    if "on_unreadable" in inspect.signature(store.list_entries).parameters:  # a store written before 0.3 has not
        reporting["on_unreadable"] = lambda error: unreadable.append(UnreadableRow.of(error))
    # A store written before 0.6 takes no ``where``: it is asked with the filters it knows, when that is all there is.
    filters: dict[str, Any] = (
        {"where": wanted}
        if wanted.searches
        else {"status": wanted.status, "command_type": wanted.command_type, "correlation_id": wanted.correlation_id}
    )
    # Counted first: a SQL store then knows how to list the search (few matches to sort, or many to walk).
    total, exact, estimated = await count_matching(store, wanted, limit=COUNT_LIMIT) if count else (None, False, False)
    entries = await store.list_entries(**reporting, **filters, limit=limit, offset=offset, newest_first=True)
    if total is not None and exact:
        has_more = offset + limit < total
    else:
        # Whether a next page exists, without counting: one row past this page, readable or not. (Asking for one
        # more row than the page cannot tell which row was the extra one when a corrupt row is among them.)
        beyond: list[UnreadableEntryError] = []
        if "on_unreadable" in reporting:
            reporting["on_unreadable"] = beyond.append
        past = await store.list_entries(**reporting, **filters, limit=1, offset=offset + limit, newest_first=True)
        has_more = bool(past or beyond)
    return EntryPage(
        entries=entries,
        unreadable=unreadable,
        limit=limit,
        offset=offset,
        next_offset=offset + limit if has_more else None,
        total=total,
        total_exact=exact if total is not None else True,
        total_estimated=estimated,
    )


#: The most entries a listing counts one by one; past it, the page says "more than COUNT_LIMIT".
COUNT_LIMIT = 10_000


class MatchCount(NamedTuple):
    """How many entries match a filter (``count_matching``)."""

    total: int
    #: False: more than ``total`` match (counting stopped there), or (``estimated``) about ``total``.
    exact: bool
    #: ``total`` is an estimate from the database's statistics.
    estimated: bool = False


async def count_matching(store: ScheduledCommandStore, where: EntryFilter, *, limit: int = COUNT_LIMIT) -> MatchCount:
    """How many entries match ``where``: a bounded count, exact up to ``limit``; past it, no filter or a status
    alone is read from the counts per status (the overview's: exact, or estimated where the store estimates a large
    status), any other filter "more than ``limit``"."""
    by_status = where == EntryFilter() or where == EntryFilter(status=where.status)
    # A store answering counts by paging through list_entries (the ABC's default; RedisStore) keeps counters per
    # status instead: those answer a status alone at once.
    paged = (
        type(store).count_entries is ScheduledCommandStore.count_entries
        and type(store).count_matching is ScheduledCommandStore.count_matching
    )
    if not (by_status and paged):
        counted = await store.count_entries(where, at_most=limit)
        if counted <= limit:
            return MatchCount(counted, True)
    if by_status:
        counts = await store.count_by_status_estimated(exact_up_to=limit)
        wanted = [counts[where.status]] if where.status is not None else list(counts.values())
        exact = all(c.exact for c in wanted)
        return MatchCount(sum(c.count for c in wanted), exact, estimated=not exact)
    return MatchCount(limit, False)


#: The statuses ``cancel_entry`` acts on: a PENDING or WAITING entry is cancelled, a FAILED one (dead letter) dismissed.
CANCELLABLE = (ScheduledCommandStatus.PENDING, ScheduledCommandStatus.WAITING, ScheduledCommandStatus.FAILED)
#: The statuses ``cancel_entry(..., running=True)`` acts on: a PROCESSING entry's attempt is cancelled too.
CANCELLABLE_RUNNING = (*CANCELLABLE, ScheduledCommandStatus.PROCESSING)


async def cancel_entry(
    store: ScheduledCommandStore,
    entry_id: str,
    now: datetime,
    *,
    running: bool = False,
    scheduler: CommandScheduler | None = None,
) -> CancelResult:
    """Cancel a PENDING entry, or dismiss a FAILED one (a dead letter that will not be run again): either becomes
    CANCELLED with ``completed_at = now``; a dismissed one keeps its error and attempts, and is purged in time.

    ``cancelled`` is False when the entry is unknown or in another status (see ``explain_refusal`` with
    ``CANCELLABLE``). ``running``: a PROCESSING entry's worker is asked to cancel the attempt (``running`` True).
    ``scheduler`` (an application's, on ``store``): a PENDING or WAITING entry is cancelled through it, so the
    cancellation is announced as ``scheduler.cancel()`` announces it (``ScheduledCommandCancelled`` to the
    application's handlers, observers, log), with the dependants it cancels; without one, nothing is published.

    .. versionchanged:: 0.7
        ``scheduler``: announced through an application's scheduler.
    """
    if scheduler is not None:
        if await scheduler.cancel(entry_id):
            return CancelResult(id=entry_id, cancelled=True)
    elif await store.cancel(entry_id, now=now) is not None:
        return CancelResult(id=entry_id, cancelled=True)
    if running and await _cancels.request(store, entry_id, now):
        return CancelResult(id=entry_id, cancelled=True, running=True)
    # Not PENDING: perhaps a dead letter. Each store call is atomic, so an entry changing in between is acted on once.
    return CancelResult(id=entry_id, cancelled=await store.dismiss(entry_id, now=now) is not None)


async def requeue_entry(store: ScheduledCommandStore, entry_id: str, now: datetime) -> RequeueResult:
    """Requeue one FAILED entry (due ``now``, retry count 0); an empty result when it is unknown or not FAILED."""
    return RequeueResult(requeued=[entry_id] if await store.requeue(entry_id, now=now) else [])


async def explain_refusal(
    store: ScheduledCommandStore,
    action: str,
    entry_id: str,
    needed: ScheduledCommandStatus | Sequence[ScheduledCommandStatus],
) -> Refusal:
    """Why ``action`` (cancel, requeue) did nothing to ``entry_id``: unknown, or not in the ``needed`` status (or
    any of the ``needed`` statuses, named in the order given)."""
    wanted = [needed] if isinstance(needed, ScheduledCommandStatus) else list(needed)
    current = await store.get(entry_id)
    needed_text = " or ".join(status.value for status in wanted)
    reason = "no such entry" if current is None else f"it is {current.status.value}, not {needed_text}"
    return Refusal(
        id=entry_id,
        status=current.status.value if current is not None else None,
        message=f"cannot {action} {entry_id}: {reason}",
    )


async def requeue_failed(store: ScheduledCommandStore, now: datetime, command_type: str | None = None) -> RequeueResult:
    return RequeueResult(requeued=await store.requeue_failed(now=now, command_type=command_type))


async def purge(
    store: ScheduledCommandStore,
    *,
    older_than: datetime,
    statuses: Collection[ScheduledCommandStatus] = TERMINAL_STATUSES,
    dry_run: bool = False,
    chunk: int = 5_000,
    on_progress: Callable[[int, int], None] | None = None,
) -> PurgeResult:
    """Delete terminal entries finished before ``older_than``, in chunks, reporting ``(done, total)``."""
    wanted = sorted(set(statuses) & TERMINAL_STATUSES)
    total = await store.count_purgeable(older_than=older_than, statuses=wanted)
    result = PurgeResult(older_than=older_than, statuses=[s.value for s in wanted], dry_run=dry_run, count=total)
    if dry_run or total == 0:
        return result
    done = 0
    while True:
        deleted = await store.purge(older_than=older_than, statuses=wanted, limit=chunk)
        done += deleted
        if on_progress is not None:
            on_progress(done, max(total, done))
        if deleted < chunk:
            break
    return result.model_copy(update={"count": done})
