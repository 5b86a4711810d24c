"""What operators ask of a store, in one place: the CLI and the web dashboard both answer from here.

Every function takes an opened ``ScheduledCommandStore`` and returns plain pydantic models whose JSON form
(``model_dump(mode="json")``) is the stable ``--json`` output of the CLI.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from stores.base import ScheduledCommandStore
from stores.entries import TERMINAL_STATUSES, AttemptRecord, ScheduledCommandEntry, ScheduledCommandStatus
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
from .workers import count_stuck, is_stuck, waiting_by_queue, waiting_for_a_worker, workers_by_state

__all__ = [
    "CANCELLABLE",
    "CANCELLABLE_RUNNING",
    "COUNT_LIMIT",
    "MAX_DURATION",
    "OCCURRENCES_SHOWN",
    "OUTCOME_RANGES",
    "CancelResult",
    "EntryDetail",
    "EntryPage",
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
    #: Entries per status, every status present.
    counts: dict[str, int]
    total: int
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


class Relative(BaseModel):
    """A parent or dependant of an entry (``ScheduleOptions.after``, a group), as ``show`` lists it."""

    id: str
    #: None when the store no longer holds it (purged by retention).
    command_type: str | None = None
    status: ScheduledCommandStatus | None = None


#: Most parents and dependants ``show`` reads one by one (a group of 10,000 members shows its first ones and counts).
RELATIVES_SHOWN = 50


class EntryDetail(BaseModel):
    """``show``: an entry with its audit trail, and its workflow (parents, dependants)."""

    entry: ScheduledCommandEntry
    attempts: list[AttemptRecord]
    #: PROCESSING under a lease expired at the time asked about: its worker is gone, recovery has not run yet.
    stuck: bool = False
    #: The entries it runs after (its ``after=`` entries, or its group's members: it is then the group's callback),
    #: the first ``RELATIVES_SHOWN`` of them, and how many in all. While it is WAITING, ``entry.pending_parents`` of
    #: them have not met its condition yet: the group's progress is ``parent_count - pending_parents``.
    parents: list[Relative] = Field(default_factory=list)
    parent_count: int = 0
    #: The entries scheduled after it (a member's group callback among them), the first ones and how many.
    dependants: list[Relative] = Field(default_factory=list)
    dependant_count: int = 0


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


async def overview(store: ScheduledCommandStore, now: datetime) -> StoreOverview:
    counts = await store.count_by_status()
    next_due = await store.next_due_at()
    overdue = next_due if next_due is not None and next_due <= now else None
    waiting = await waiting_by_queue(store, now)
    return StoreOverview(
        store=store.description,
        now=now,
        counts={status.value: count for status, count in counts.items()},
        total=sum(counts.values()),
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
    total, exact = await count_matching(store, wanted) if count else (None, False)
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
    )


#: The most entries a listing counts one by one; past it, the page says "more than COUNT_LIMIT".
COUNT_LIMIT = 10_000


async def count_matching(store: ScheduledCommandStore, where: EntryFilter) -> tuple[int, bool]:
    """How many entries match ``where``, and whether exactly: a bounded count, exact up to ``COUNT_LIMIT``; past it,
    no filter or a status alone is still exact (the counts per status every store keeps, the overview's), any
    other filter "more than ``COUNT_LIMIT``"."""
    by_status = where == EntryFilter() or where == EntryFilter(status=where.status)
    # A store answering counts by paging through list_entries (the ABC's default; RedisStore) keeps counters per
    # status instead: those answer a status alone at once.
    paged = type(store).count_entries is ScheduledCommandStore.count_entries
    if not (by_status and paged):
        counted = await store.count_entries(where, at_most=COUNT_LIMIT)
        if counted <= COUNT_LIMIT:
            return counted, True
    if by_status:
        counts = await store.count_by_status()
        return (counts[where.status] if where.status is not None else sum(counts.values())), True
    return COUNT_LIMIT, False


async def entry_detail(store: ScheduledCommandStore, entry_id: str, now: datetime | None = None) -> EntryDetail | None:
    """The entry and its attempts (and whether it is stuck at ``now``); None if unknown. Raises
    ``UnreadableEntryError`` (one line: which column, what value) for a row that cannot be read."""
    entry = await store.get(entry_id)
    if entry is None:
        return None
    stuck = now is not None and is_stuck(entry, now)
    parent_ids = await store.get_parents(entry_id)
    dependant_ids = await store.get_dependants(entry_id)
    return EntryDetail(
        entry=entry,
        attempts=await store.get_attempts(entry_id),
        stuck=stuck,
        parents=await _relatives(store, parent_ids[:RELATIVES_SHOWN]),
        parent_count=len(parent_ids),
        dependants=await _relatives(store, dependant_ids[:RELATIVES_SHOWN]),
        dependant_count=len(dependant_ids),
    )


async def _relatives(store: ScheduledCommandStore, entry_ids: Sequence[str]) -> list[Relative]:
    relatives = []
    for entry_id in entry_ids:
        entry = await store.get(entry_id)
        relatives.append(
            Relative(id=entry_id)
            if entry is None
            else Relative(id=entry_id, command_type=entry.command_type, status=entry.status)
        )
    return relatives


#: The statuses ``cancel_entry`` acts on: a PENDING or WAITING entry is cancelled, a FAILED one (dead letter) dismissed.
CANCELLABLE = (ScheduledCommandStatus.PENDING, ScheduledCommandStatus.WAITING, ScheduledCommandStatus.FAILED)
#: The statuses ``cancel_entry(..., running=True)`` acts on: a PROCESSING entry's attempt is cancelled too.
CANCELLABLE_RUNNING = (*CANCELLABLE, ScheduledCommandStatus.PROCESSING)


async def cancel_entry(
    store: ScheduledCommandStore, entry_id: str, now: datetime, *, running: bool = False
) -> CancelResult:
    """Cancel a PENDING entry, or dismiss a FAILED one (a dead letter that will not be run again): either becomes
    CANCELLED with ``completed_at = now``; a dismissed one keeps its error and attempts, and is purged in time.

    ``cancelled`` is False when the entry is unknown or in another status (see ``explain_refusal`` with
    ``CANCELLABLE``). ``running``: a PROCESSING entry's worker is asked to cancel the attempt (``running`` True).
    """
    if await store.cancel(entry_id, now=now) is not None:
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


_DURATION = re.compile(r"(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>ms|w|d|h|m|s)")
_UNITS = {"w": 604_800.0, "d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_ISO_DURATION: TypeAdapter[timedelta] = TypeAdapter(timedelta)


#: The longest duration ``parse_duration`` accepts: "now" minus it is still a date.
MAX_DURATION = timedelta(days=365_250)


def parse_duration(text: str) -> timedelta:
    """``7d``, ``12h``, ``1d12h``, ``90m``, ``30s``, or an ISO 8601 duration (``P7D``); positive, at most
    ``MAX_DURATION`` (1000 years).

    Raises:
        ValueError: anything else, quoting the text.
    """
    compact = text.strip().lower().replace(" ", "")
    try:
        if compact and _DURATION.sub("", compact) == "":
            seconds = sum(float(m["value"]) * _UNITS[m["unit"]] for m in _DURATION.finditer(compact))
            value = timedelta(seconds=seconds)
        else:
            value = _ISO_DURATION.validate_python(text.strip())
    except ValidationError:
        raise ValueError(
            f"not a duration: {text!r} (use e.g. 7d, 12h, 1d12h, 90m, 30s, or ISO 8601 like P7D)"
        ) from None
    except OverflowError:
        raise ValueError(f"the duration {text!r} is too long: at most {MAX_DURATION.days}d") from None
    if value <= timedelta(0):
        raise ValueError(f"the duration must be positive, got {text!r}")
    if value > MAX_DURATION:
        raise ValueError(f"the duration {text!r} is too long: at most {MAX_DURATION.days}d")
    return value
