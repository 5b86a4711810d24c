"""SQLite has a single write lock: while a process holds it, no worker can renew its leases. A lease that expired
because of such a stall is not taken over until its owner had the time to renew it after the stall.

Real time is the point here (how long the lock is held), so the stall is a real 2.5 s; due times and leases are
given explicitly, as a ``Clock`` would give them. The lease is 2 s and recovery looks 3 s after the claim: without
the stall it would take the entry over (the control case shows it does).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from scheduling_app import START, Record, RecordHandler, make_app

from stores import SqlStore

LEASE = timedelta(seconds=2)
STALL_SECONDS = 2.5


async def claimed_entry(store: SqlStore) -> tuple[str, str]:
    """One entry claimed by worker ``a`` at START with a 2 s lease: its id and lease token."""
    app = make_app(store=store, handlers=[RecordHandler])
    await app.scheduler.schedule(Record(value="long"))
    [entry] = await store.claim_due(now=START, limit=1, worker_id="a", lease_duration=LEASE)
    assert entry.lease_token is not None
    return entry.id, entry.lease_token


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[SqlStore, SqlStore, str]]:
    path = tmp_path / "stall.db"
    # The schema is made by a store of its own first: creating it holds the write lock for as long as a loaded
    # machine takes, and a store that held the lock a second or more rightly counts that as a stall. The two stores
    # below then see only the stalls each test makes.
    async with SqlStore(f"sqlite:///{path}"):
        pass
    owner, other = SqlStore(f"sqlite:///{path}"), SqlStore(f"sqlite:///{path}")
    await owner.open()
    await other.open()
    try:
        yield owner, other, str(path)
    finally:
        await other.close()
        await owner.close()


async def test_without_a_stall_an_expired_lease_is_taken_over(stores: tuple[SqlStore, SqlStore, str]) -> None:
    owner, other, _ = stores
    entry_id, _ = await claimed_entry(owner)
    reclaimed = await other.reclaim_expired_leases(
        now=START + timedelta(seconds=3), limit=10, worker_id="b", lease_duration=LEASE
    )
    assert [r.entry.id for r in reclaimed] == [entry_id]


async def test_a_lease_that_expired_while_another_program_held_the_write_lock_is_left_to_its_owner(
    stores: tuple[SqlStore, SqlStore, str],
) -> None:
    """Another program holds the write lock for 2.5 s; the recovering worker waits for it all that time, then does
    not take over the lease that expired 1 s before its ``now``; the owner renews it; once the lease is really
    abandoned (expired longer than the stall), it is taken over."""
    owner, other, path = stores
    entry_id, token = await claimed_entry(owner)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        asyncio.get_running_loop().call_later(STALL_SECONDS, holder.rollback)
        reclaimed = await other.reclaim_expired_leases(
            now=START + timedelta(seconds=3), limit=10, worker_id="b", lease_duration=LEASE
        )
    finally:
        holder.close()
    assert reclaimed == [], "a lease that expired during the stall was taken over"
    assert await owner.renew_leases([(entry_id, token)], until=START + timedelta(seconds=5)) == {entry_id}
    later = await other.reclaim_expired_leases(
        now=START + timedelta(seconds=20), limit=10, worker_id="b", lease_duration=LEASE
    )
    assert [r.entry.id for r in later] == [entry_id], "an abandoned lease is still taken over"


async def test_a_worker_paused_inside_its_own_write_transaction_leaves_the_others_leases_alone(
    stores: tuple[SqlStore, SqlStore, str],
) -> None:
    """The case of a worker paused (SIGSTOP, a debugger, a swapped-out VM) inside a write transaction: when it
    resumes, its own recovery does not take over the leases the others could not renew meanwhile."""
    owner, other, _ = stores
    entry_id, token = await claimed_entry(owner)
    async with other._write():  # the paused transaction: it holds the write lock all along
        await asyncio.sleep(STALL_SECONDS)
    reclaimed = await other.reclaim_expired_leases(
        now=START + timedelta(seconds=3), limit=10, worker_id="b", lease_duration=LEASE
    )
    assert reclaimed == []
    assert await owner.renew_leases([(entry_id, token)], until=START + timedelta(seconds=5)) == {entry_id}
