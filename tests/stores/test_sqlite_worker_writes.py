"""Where the SQLite store's worker writes go: on a plain file, claims and outcome batches run whole on the backend's
own thread (one hop each, ``stores/sql/_sqlite_direct.py``); a URL with options keeps every statement on the engine
(the contract suite runs on both); an outcome batch with an entry that has dependants is rolled back there and
written by the store's own transaction, which resolves them."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from stores import ScheduledCommandStore
from stores.dependencies import Dependency
from stores.entries import AttemptRecord, ScheduledCommandStatus
from stores.queues import QueueLimits
from stores.sql import SqlStore
from stores.testing._helpers import BASE, make_entry

LEASE = timedelta(minutes=1)


def _attempt(number: int = 1) -> AttemptRecord:
    return AttemptRecord(
        attempt=number, worker_id="w", started_at=BASE, finished_at=BASE + timedelta(seconds=1), outcome="completed"
    )


def _worker_thread_used(store: ScheduledCommandStore) -> bool:
    assert isinstance(store, SqlStore)
    return getattr(store._backend, "_direct", None) is not None


@pytest.mark.parametrize("store_factory", ["sqlite", "sqlite-engine-only"], indirect=True)
async def test_claims_and_outcomes_take_the_backends_thread_on_a_plain_file_only(
    store: ScheduledCommandStore, request: pytest.FixtureRequest
) -> None:
    entries = [make_entry(priority=p) for p in (1, 5, 3)]
    await store.add(entries)
    claimed = await store.claim_due(now=BASE, limit=10, worker_id="w", lease_duration=LEASE)
    assert [e.priority for e in claimed] == [5, 3, 1]
    assert all(e.status == ScheduledCommandStatus.PROCESSING and e.lease_owner == "w" for e in claimed)
    for entry in claimed:
        assert entry.lease_token is not None
        assert await store.complete(entry.id, entry.lease_token, result_payload='{"ok": 1}', attempt=_attempt())
    for entry in entries:
        stored = await store.get(entry.id)
        assert stored is not None and stored.status == ScheduledCommandStatus.COMPLETED
        assert stored.result_payload == '{"ok": 1}' and stored.completed_at == BASE + timedelta(seconds=1)
        assert [a.outcome for a in await store.get_attempts(entry.id)] == ["completed"]
    assert _worker_thread_used(store) == (request.node.callspec.params["store_factory"] == "sqlite")


@pytest.mark.parametrize("store_factory", ["sqlite"], indirect=True)
async def test_an_outcome_batch_with_a_parent_is_left_to_the_transaction_that_releases_its_dependants(
    store: ScheduledCommandStore,
) -> None:
    parent, plain = make_entry(), make_entry()
    child = make_entry()
    await store.add([parent, plain])
    await store.add_dependants([child], {child.id: Dependency((parent.id,))})
    claimed = await store.claim_due(now=BASE, limit=10, worker_id="w", lease_duration=LEASE)
    assert {e.id for e in claimed} == {parent.id, plain.id}
    # Together: one outcome batch holding the parent and an entry without dependants.
    done = await asyncio.gather(
        *(store.complete(e.id, e.lease_token or "", result_payload=None, attempt=_attempt()) for e in claimed)
    )
    assert done == [True, True]
    stored_child = await store.get(child.id)
    assert stored_child is not None and stored_child.status == ScheduledCommandStatus.PENDING
    assert [e.id for e in await store.claim_due(now=BASE, limit=10, worker_id="w", lease_duration=LEASE)] == [child.id]
    assert _worker_thread_used(store)


@pytest.mark.parametrize("store_factory", ["sqlite"], indirect=True)
async def test_a_claim_cancelled_while_the_database_commits_it_gives_its_entries_back(
    store: ScheduledCommandStore, tmp_path: Path
) -> None:
    """The claim runs on, on the backend's thread, when its caller is cancelled (here while it waits for the write
    lock another program holds): once committed, its entries go back to PENDING at once, not held under a lease
    nobody renews until it expires."""
    assert isinstance(store, SqlStore)
    entry = make_entry()
    await store.add([entry])
    holder = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        claiming = asyncio.ensure_future(store.claim_due(now=BASE, limit=10, worker_id="w", lease_duration=LEASE))
        async with asyncio.timeout(30):
            while not store._backend._write_lock.locked():  # type: ignore[attr-defined]
                await asyncio.sleep(0.005)  # until the claim is on the backend's thread, waiting for the lock
        claiming.cancel()
        await asyncio.sleep(0.05)
        assert not claiming.done()  # it waits for the claim it started
        holder.execute("COMMIT")
    finally:
        holder.close()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(claiming, timeout=30)
    stored = await store.get(entry.id)
    assert stored is not None and stored.status == ScheduledCommandStatus.PENDING
    assert stored.lease_owner is None and stored.lease_token is None
    assert [e.id for e in await store.claim_due(now=BASE, limit=10, worker_id="w2", lease_duration=LEASE)] == [entry.id]


@pytest.mark.parametrize("store_factory", ["sqlite"], indirect=True)
async def test_a_limited_queue_whose_paused_flag_was_written_as_text_false_is_claimed(
    store: ScheduledCommandStore,
) -> None:
    """``paused`` is read as SQLite reads a condition: the text 'false', written behind the library's back, is not
    paused (as ``WHERE paused`` has it), where a Python truth test would skip the queue forever."""
    assert isinstance(store, SqlStore)
    await store.set_queue_limits("mail", QueueLimits(max_running=5))
    async with store.engine.begin() as conn:
        await conn.execute(text("UPDATE scheduled_queues SET paused = 'false' WHERE name = 'mail'"))
    entry = make_entry(queue="mail")
    await store.add([entry])
    claimed = await store.claim_due(now=BASE, limit=10, worker_id="w", lease_duration=LEASE)
    assert [e.id for e in claimed] == [entry.id]
