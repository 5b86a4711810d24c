"""Bulk operator actions: requeue, cancel or dismiss the entries of a selection or of a whole filter result.

The dashboard, the admin API (``POST /api/entries/bulk``) and the CLI (``cqrs-scheduling bulk``) all act through
``bulk_by_ids`` and ``bulk_by_filter``. Three safeguards:

- **The count is confirmed.** ``bulk_by_filter(dry_run=True)`` says how many entries the action would take; the
  action itself needs that number back (``expected``) and refuses (``BulkCountError``) when more entries match by
  then, so a script or a click never acts on more than it was shown. It acts on at most ``expected`` entries.
- **Batches.** Entries are acted on ``batch`` at a time (each one its own atomic store call, fenced by its status,
  so an entry that changed meanwhile is left alone and reported as refused), with progress after each batch.
  ``limit`` stops after that many: the dashboard runs one batch per request to show progress, passing the
  ``remaining`` count of one answer as the ``expected`` of the next.
- **Audit.** Every batch leaves one record in the audit trail (``bulk_requeue``, ``bulk_cancel``, ``bulk_dismiss``)
  naming its entries and the filter (or ``selection``).

Each action takes entries from one status: requeue and dismiss FAILED ones (a dismissed dead letter becomes
CANCELLED), cancel PENDING ones. A filter naming another status is refused with a ``ValueError`` saying so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from stores.base import ScheduledCommandStore
from stores.entries import ScheduledCommandStatus
from stores.filters import EntryFilter

from .audit import Actor, record_action

if TYPE_CHECKING:
    from .scheduler import CommandScheduler

__all__ = [
    "BATCH",
    "MAX_BULK",
    "MAX_SELECTION",
    "SOURCE_STATUS",
    "BulkAction",
    "BulkCountError",
    "BulkResult",
    "bulk_by_filter",
    "bulk_by_ids",
    "scoped",
]

BulkAction = Literal["requeue", "cancel", "dismiss"]

#: The status each action takes entries from.
SOURCE_STATUS: dict[BulkAction, ScheduledCommandStatus] = {
    "requeue": ScheduledCommandStatus.FAILED,
    "cancel": ScheduledCommandStatus.PENDING,
    "dismiss": ScheduledCommandStatus.FAILED,
}
#: Entries per batch (one audit record each).
BATCH = 200
#: The most entries one action over a filter takes; a larger result is refused (narrow the filter, or purge).
MAX_BULK = 100_000
#: The most ids one selection may name.
MAX_SELECTION = 1_000


class BulkCountError(ValueError):
    """More entries match than the caller confirmed: nothing was done. Look again (a dry run) and confirm the new
    count, or narrow the filter.

    .. versionadded:: 0.6
    """

    def __init__(self, matched: int, expected: int) -> None:
        self.matched = matched
        self.expected = expected
        super().__init__(matched, expected)

    def __str__(self) -> str:
        more = f"more than {MAX_BULK:,}" if self.matched > MAX_BULK else f"{self.matched:,}"
        return (
            f"{more} entries match now, more than the {self.expected:,} confirmed: nothing was done; "
            "count again and confirm the new number"
        )


class BulkResult(BaseModel):
    """What a bulk action did (or, ``dry_run``, would do).

    .. versionadded:: 0.6
    """

    action: BulkAction
    #: The filter acted on, as the audit trail names it, or ``selection``.
    target: str
    #: Entries the action could take when it started (the filter and the action's status): the count to confirm.
    matched: int
    dry_run: bool = False
    #: The ids acted on, in the order acted on.
    done: list[str] = []
    #: Ids left alone: unknown, or no longer in the action's status.
    refused: list[str] = []
    batches: int = 0
    #: Entries the action could still take when it returned (the ``expected`` of the next call to go on).
    remaining: int = 0


def scoped(action: BulkAction, where: EntryFilter) -> EntryFilter:
    """``where`` narrowed to the status ``action`` takes entries from.

    Raises:
        ValueError: ``where`` asks for another status, naming both.
    """
    needed = SOURCE_STATUS[action]
    if where.status is not None and where.status is not needed:
        raise ValueError(f"{action} acts on {needed.value} entries; the filter asks for {where.status.value}")
    return where.model_copy(update={"status": needed})


async def _act(
    store: ScheduledCommandStore,
    action: BulkAction,
    entry_id: str,
    now: datetime,
    scheduler: CommandScheduler | None,
) -> bool:
    if action == "requeue":
        return await store.requeue(entry_id, now=now) is not None
    if action == "cancel":
        if scheduler is not None:  # announced as the application's own cancel() announces it
            return await scheduler.cancel(entry_id)
        return await store.cancel(entry_id, now=now) is not None
    return await store.dismiss(entry_id, now=now) is not None


async def _run_batch(
    store: ScheduledCommandStore,
    action: BulkAction,
    ids: Sequence[str],
    *,
    clock: Callable[[], datetime],
    actor: Actor,
    target: str,
    result: BulkResult,
    scheduler: CommandScheduler | None,
) -> list[str]:
    """Act on ``ids``, record the batch in the audit trail, add to ``result``; the ids refused."""
    now = clock()
    done = [entry_id for entry_id in ids if await _act(store, action, entry_id, now, scheduler)]
    refused = [entry_id for entry_id in ids if entry_id not in set(done)]
    result.batches += 1
    result.done += done
    result.refused += refused
    if done:
        await record_action(
            store, actor, f"bulk_{action}", now=clock(), entry_ids=done, target=f"{target} (batch {result.batches})"
        )
    return refused


async def bulk_by_ids(
    store: ScheduledCommandStore,
    action: BulkAction,
    ids: Sequence[str],
    *,
    clock: Callable[[], datetime],
    actor: Actor,
    batch: int = BATCH,
    on_progress: Callable[[BulkResult], None] | None = None,
    scheduler: CommandScheduler | None = None,
) -> BulkResult:
    """Act on the entries ``ids`` names (each once, in the order given) that are in the action's status.

    ``scheduler`` (an application's, on ``store``): each cancel goes through it, so it is announced as
    ``scheduler.cancel()`` announces it (``ScheduledCommandCancelled`` to the application's handlers, with the
    dependants it cancels); without one, nothing is published.

    Raises:
        ValueError: more than ``MAX_SELECTION`` ids.
    """
    unique = list(dict.fromkeys(ids))
    if len(unique) > MAX_SELECTION:
        raise ValueError(f"a selection names at most {MAX_SELECTION} entries, got {len(unique)}")
    result = BulkResult(action=action, target="selection", matched=len(unique))
    for start in range(0, len(unique), batch):
        await _run_batch(
            store,
            action,
            unique[start : start + batch],
            clock=clock,
            actor=actor,
            target="selection",
            result=result,
            scheduler=scheduler,
        )
        if on_progress is not None:
            on_progress(result)
    return result


async def bulk_by_filter(
    store: ScheduledCommandStore,
    action: BulkAction,
    where: EntryFilter,
    *,
    clock: Callable[[], datetime],
    actor: Actor,
    expected: int | None = None,
    limit: int | None = None,
    dry_run: bool = False,
    batch: int = BATCH,
    on_progress: Callable[[BulkResult], None] | None = None,
    scheduler: CommandScheduler | None = None,
) -> BulkResult:
    """Act on the entries matching ``where`` in the action's status, oldest first, ``batch`` at a time.

    Args:
        expected: the count confirmed (a dry run's ``matched``); required unless ``dry_run``.
        limit: stop after this many (the caller goes on with another call); all of them when None.
        dry_run: only count: ``matched`` is what the action would take.
        scheduler: cancels go through this application's scheduler, announced (see ``bulk_by_ids``).

    Raises:
        ValueError: ``where`` asks for a status the action does not take, or ``expected`` is missing.
        BulkCountError: more entries match than ``expected`` (or than ``MAX_BULK``); nothing was done.
        UnsupportedFeatureError: the store cannot search by a field of ``where``.
    """
    wanted = scoped(action, where)
    target = where.describe()
    matched = await store.count_entries(wanted, at_most=MAX_BULK)
    result = BulkResult(action=action, target=target, matched=matched, dry_run=dry_run, remaining=matched)
    if dry_run:
        return result
    if expected is None:
        raise ValueError("expected (the count confirmed, from a dry run) is required to act on a filter result")
    if matched > min(expected, MAX_BULK):
        raise BulkCountError(matched, expected)
    budget = matched if limit is None else min(matched, max(0, limit))
    skipped = 0  # refused entries may still match: later pages start past them
    while len(result.done) + len(result.refused) < budget:
        size = min(batch, budget - len(result.done) - len(result.refused))
        page = await store.list_entries(where=wanted, limit=size, offset=skipped)
        if not page:
            break
        skipped += len(
            await _run_batch(
                store,
                action,
                [entry.id for entry in page],
                clock=clock,
                actor=actor,
                target=target,
                result=result,
                scheduler=scheduler,
            )
        )
        if on_progress is not None:
            on_progress(result)
    result.remaining = await store.count_entries(wanted, at_most=MAX_BULK)
    return result
