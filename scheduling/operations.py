"""What operators ask of a store, in one place: the CLI and the web dashboard both answer from here.

Every function takes an opened ``ScheduledCommandStore`` and returns plain pydantic models whose JSON form
(``model_dump(mode="json")``) is the stable ``--json`` output of the CLI.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from pydantic import BaseModel, TypeAdapter, ValidationError

from stores.base import ScheduledCommandStore
from stores.entries import TERMINAL_STATUSES, AttemptRecord, ScheduledCommandEntry, ScheduledCommandStatus

__all__ = [
    "EntryDetail",
    "EntryPage",
    "PurgeResult",
    "RequeueResult",
    "StoreOverview",
    "entry_detail",
    "list_page",
    "overview",
    "parse_duration",
    "purge",
    "requeue_failed",
]


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
    #: Dead letters (FAILED) per command type.
    dead_letters_by_type: dict[str, int]


class EntryPage(BaseModel):
    """``list``: one page of entries, newest first."""

    entries: list[ScheduledCommandEntry]
    limit: int
    offset: int
    #: The offset of the next page, or None on the last one.
    next_offset: int | None


class EntryDetail(BaseModel):
    """``show``: an entry with its audit trail."""

    entry: ScheduledCommandEntry
    attempts: list[AttemptRecord]


class RequeueResult(BaseModel):
    requeued: list[str]


class PurgeResult(BaseModel):
    older_than: datetime
    statuses: list[str]
    dry_run: bool
    #: Deleted, or (dry run) that would be deleted.
    count: int


async def overview(store: ScheduledCommandStore, now: datetime) -> StoreOverview:
    counts = await store.count_by_status()
    next_due = await store.next_due_at()
    overdue = next_due if next_due is not None and next_due <= now else None
    return StoreOverview(
        store=store.description,
        now=now,
        counts={status.value: count for status, count in counts.items()},
        total=sum(counts.values()),
        next_due_at=next_due,
        oldest_overdue_at=overdue,
        oldest_overdue_lag_seconds=(now - overdue).total_seconds() if overdue is not None else None,
        dead_letters_by_type=dict(sorted((await store.count_by_command_type(ScheduledCommandStatus.FAILED)).items())),
    )


async def list_page(
    store: ScheduledCommandStore,
    *,
    status: ScheduledCommandStatus | None = None,
    command_type: str | None = None,
    correlation_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> EntryPage:
    # One more than asked tells whether a next page exists without counting.
    entries = await store.list_entries(
        status=status,
        command_type=command_type,
        correlation_id=correlation_id,
        limit=limit + 1,
        offset=offset,
        newest_first=True,
    )
    has_more = len(entries) > limit
    return EntryPage(
        entries=entries[:limit], limit=limit, offset=offset, next_offset=offset + limit if has_more else None
    )


async def entry_detail(store: ScheduledCommandStore, entry_id: str) -> EntryDetail | None:
    entry = await store.get(entry_id)
    if entry is None:
        return None
    return EntryDetail(entry=entry, attempts=await store.get_attempts(entry_id))


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


def parse_duration(text: str) -> timedelta:
    """``7d``, ``12h``, ``1d12h``, ``90m``, ``30s``, or an ISO 8601 duration (``P7D``); positive.

    Raises:
        ValueError: anything else, quoting the text.
    """
    compact = text.strip().lower().replace(" ", "")
    if compact and _DURATION.sub("", compact) == "":
        seconds = sum(float(m["value"]) * _UNITS[m["unit"]] for m in _DURATION.finditer(compact))
        value = timedelta(seconds=seconds)
    else:
        try:
            value = _ISO_DURATION.validate_python(text.strip())
        except ValidationError:
            raise ValueError(
                f"not a duration: {text!r} (use e.g. 7d, 12h, 1d12h, 90m, 30s, or ISO 8601 like P7D)"
            ) from None
    if value <= timedelta(0):
        raise ValueError(f"the duration must be positive, got {text!r}")
    return value
