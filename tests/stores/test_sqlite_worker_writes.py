"""Where the SQLite store's worker writes go: on a plain file, claims and outcome batches run whole on the backend's
own thread (one hop each, ``stores/sql/_sqlite_direct.py``); a URL with options keeps every statement on the engine
(the contract suite runs on both); an outcome batch with an entry that has dependants is rolled back there and
written by the store's own transaction, which resolves them."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from stores import ScheduledCommandStore
from stores.dependencies import Dependency
from stores.entries import AttemptRecord, ScheduledCommandStatus
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
