"""The purge contract as retention uses it, for the store under test: small batches per status,
each entry deleted exactly once however many purgers run at once, and never an entry that left its finished
status while a purge looked at it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from stores.base import ScheduledCommandStore
from stores.entries import ScheduledCommandStatus

from ._helpers import (
    CANCELLED,
    COMPLETED,
    EXPIRED,
    FAILED,
    PENDING,
    PROCESSING,
    StoreFactory,
    at,
    entry_in_status,
    make_attempt,
    make_occurrence,
    make_schedule,
)


async def test_purge_by_status_keeps_what_is_not_old_enough(store: ScheduledCommandStore) -> None:
    """Each status with its own cut-off (as retention asks): only entries finished before it go, attempts along."""
    completed = await entry_in_status(store, COMPLETED)  # finished at BASE + 1s
    failed = await entry_in_status(store, FAILED)
    cancelled = await entry_in_status(store, CANCELLED)
    expired = await entry_in_status(store, EXPIRED)
    pending = await entry_in_status(store, PENDING, scheduled_for=at(-1000))
    processing = await entry_in_status(store, PROCESSING, scheduled_for=at(-1000))

    assert await store.purge(older_than=at(2), statuses=[COMPLETED], limit=500) == 1
    assert await store.purge(older_than=at(1), statuses=[FAILED], limit=500) == 0  # finished exactly at the cut-off
    assert await store.purge(older_than=at(2), statuses=[CANCELLED], limit=500) == 1

    assert await store.get(completed) is None
    assert await store.get_attempts(completed) == []
    assert await store.get(cancelled) is None
    kept = {entry_id: await store.get(entry_id) for entry_id in (failed, expired, pending, processing)}
    assert all(entry is not None for entry in kept.values())
    assert len(await store.get_attempts(failed)) == 1
    assert (await store.count_by_status())[FAILED] == 1


async def test_purge_never_touches_pending_or_processing_even_when_asked(store: ScheduledCommandStore) -> None:
    """Asking for every status with a cut-off far ahead still leaves unfinished entries and their attempts."""
    pending = await entry_in_status(store, PENDING, scheduled_for=at(-1000))
    processing = await entry_in_status(store, PROCESSING, scheduled_for=at(-1000))
    for status in (PENDING, PROCESSING):
        assert await store.purge(older_than=at(10**6), statuses=[status], limit=500) == 0
    assert await store.get(pending) is not None
    assert await store.get(processing) is not None


async def test_concurrent_purgers_delete_each_entry_once(
    store: ScheduledCommandStore, store_factory: StoreFactory, tmp_path: Path
) -> None:
    """Two purgers on the same data at once (two store instances where the store is shared, else two tasks on one)
    together report exactly the number of eligible entries: no entry is counted twice, none is left, no error."""
    other = store_factory(tmp_path)
    async with other:
        if not other.durable:
            other = store  # a store whose instances do not share data (memory): two tasks on one instance
        finished = [await entry_in_status(store, COMPLETED) for _ in range(60)]
        survivor = await entry_in_status(store, PENDING, scheduled_for=at(-1000))

        async def purger(on: ScheduledCommandStore) -> int:
            total = 0
            while deleted := await on.purge(older_than=at(10), statuses=[COMPLETED], limit=7):
                total += deleted
                await asyncio.sleep(0)
            return total

        counts = await asyncio.wait_for(asyncio.gather(purger(store), purger(other), purger(store)), timeout=60)
        assert sum(counts) == len(finished)
        assert (await store.count_by_status())[COMPLETED] == 0
        assert await store.get(survivor) is not None


async def test_purge_never_deletes_an_entry_requeued_meanwhile(store: ScheduledCommandStore) -> None:
    """A dead letter requeued while purges run is either purged before the requeue (which then fails) or requeued
    and kept: a command is never dropped after its requeue succeeded."""
    ids = [await entry_in_status(store, FAILED) for _ in range(40)]

    async def purge_all() -> int:
        total = 0
        while deleted := await store.purge(older_than=at(10), statuses=[FAILED], limit=3):
            total += deleted
        return total

    async def requeue_all() -> list[str]:
        requeued = []
        for entry_id in reversed(ids):
            if await store.requeue(entry_id, now=at(20)):
                requeued.append(entry_id)
            await asyncio.sleep(0)
        return requeued

    purged, requeued = await asyncio.gather(purge_all(), requeue_all())
    assert purged + len(requeued) == len(ids)
    for entry_id in requeued:
        entry = await store.get(entry_id)
        assert entry is not None and entry.status is PENDING


async def test_completed_entry_attempts_go_with_it(store: ScheduledCommandStore) -> None:
    """An entry purged in a batch leaves no attempt behind, also one retried before it completed."""
    claimed = await entry_in_status(store, PROCESSING)
    entry = await store.get(claimed)
    assert entry is not None and entry.lease_token is not None
    failed = make_attempt(1, outcome="failed")
    assert await store.retry_later(claimed, entry.lease_token, due=at(0), error_message="boom", attempt=failed)
    again = (await store.claim_due(now=at(0), limit=1, worker_id="w", lease_duration=at(60) - at(0)))[0]
    assert again.lease_token is not None
    assert await store.complete(claimed, again.lease_token, result_payload=None, attempt=make_attempt(2))
    assert len(await store.get_attempts(claimed)) == 2
    assert await store.purge(older_than=at(10), statuses=[ScheduledCommandStatus.COMPLETED], limit=1) == 1
    assert await store.get_attempts(claimed) == []


async def test_purge_leaves_recurring_schedules_and_their_pending_occurrence(store: ScheduledCommandStore) -> None:
    """A recurring schedule's finished occurrences are entries like any other; the schedule itself and its next
    (pending) occurrence are never purged."""
    schedule = await store.upsert_schedule(make_schedule())
    done = make_occurrence("nightly", schedule.generation, 0)
    upcoming = make_occurrence("nightly", schedule.generation, 86_400)
    await store.add([done, upcoming])
    claimed = (await store.claim_due(now=at(0), limit=1, worker_id="w", lease_duration=at(60) - at(0)))[0]
    assert claimed.id == done.id and claimed.lease_token is not None
    assert await store.complete(done.id, claimed.lease_token, result_payload=None, attempt=make_attempt())
    assert await store.purge(older_than=at(10**6), statuses=[COMPLETED], limit=500) == 1
    assert await store.get_schedule("nightly") == schedule
    assert await store.get(done.id) is None
    assert await store.get(upcoming.id) is not None
