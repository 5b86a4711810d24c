"""The cancel-running contract (``request_cancel`` and ``cancel_claimed``): ``CancelRunningContract``.

An operator's request marks a PROCESSING entry and wakes its holder (through the finish listeners, in this process
or another); the holder then ends the entry CANCELLED, fenced by its lease like every outcome. A request for an
entry that is not running changes nothing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from stores.base import ScheduledCommandStore

from ._helpers import BASE, CANCELLED, COMPLETED, PROCESSING, StoreFactory, at, claim, make_attempt, make_entry


async def test_a_request_marks_the_running_entry_and_calls_its_listeners(store: ScheduledCommandStore) -> None:
    entry = make_entry()
    await store.add([entry])
    (claimed,) = await claim(store)
    heard: list[str] = []
    store.add_finish_listener(entry.id, heard.append)
    requested = await store.request_cancel(entry.id, now=at(5))
    assert requested is not None
    assert requested.status is PROCESSING and requested.cancel_requested_at == at(5)
    assert requested.lease_token == claimed.lease_token  # the holder keeps its lease until it ends the attempt
    again = await store.request_cancel(entry.id, now=at(9))
    assert again is not None and again.cancel_requested_at == at(5)  # the first request's time is kept
    async with asyncio.timeout(5):
        while entry.id not in heard:
            await asyncio.sleep(0.01)
    stored = await store.get(entry.id)
    assert stored is not None and stored.status is PROCESSING and stored.cancel_requested_at == at(5)


@pytest.mark.parametrize("status", ["pending", "completed", "unknown"])
async def test_a_request_for_an_entry_not_running_changes_nothing(store: ScheduledCommandStore, status: str) -> None:
    entry = make_entry(scheduled_for=at(3600) if status == "pending" else BASE)
    await store.add([entry])
    if status == "completed":
        (claimed,) = await claim(store)
        assert claimed.lease_token is not None
        assert await store.complete(entry.id, claimed.lease_token, result_payload=None, attempt=make_attempt())
    entry_id = "no-such-entry" if status == "unknown" else entry.id
    before = await store.get(entry_id)
    assert await store.request_cancel(entry_id, now=at(5)) is None
    assert await store.get(entry_id) == before


async def test_cancel_claimed_ends_the_entry_cancelled_with_its_attempt(store: ScheduledCommandStore) -> None:
    entry = make_entry(max_retries=3)
    await store.add([entry])
    (claimed,) = await claim(store)
    assert claimed.lease_token is not None
    await store.request_cancel(entry.id, now=at(1))
    attempt = make_attempt(outcome="cancelled", finished=2, error="cancelled on request")
    assert await store.cancel_claimed(entry.id, claimed.lease_token, error_message="cancelled", attempt=attempt)
    stored = await store.get(entry.id)
    assert stored is not None
    assert stored.status is CANCELLED and stored.completed_at == at(2)
    assert stored.retry_count == 0 and stored.attempt_count == 1 and stored.error_message == "cancelled"
    assert stored.lease_token is None and stored.lease_owner is None
    assert await store.get_attempts(entry.id) == [attempt]
    assert await claim(store, now=at(3600)) == []  # not retried


async def test_cancel_claimed_is_fenced_by_the_lease(store: ScheduledCommandStore) -> None:
    entry = make_entry()
    await store.add([entry])
    (claimed,) = await claim(store)
    assert claimed.lease_token is not None
    attempt = make_attempt(outcome="cancelled")
    assert not await store.cancel_claimed(entry.id, "stale-token", error_message="cancelled", attempt=attempt)
    assert await store.complete(entry.id, claimed.lease_token, result_payload=None, attempt=make_attempt())
    assert not await store.cancel_claimed(entry.id, claimed.lease_token, error_message="cancelled", attempt=attempt)
    stored = await store.get(entry.id)
    assert stored is not None and stored.status is COMPLETED


async def test_requeue_clears_an_old_request(store: ScheduledCommandStore) -> None:
    """A request that met a failure first does not cancel the run an operator requeues later."""
    entry = make_entry(max_retries=0)
    await store.add([entry])
    (claimed,) = await claim(store)
    assert claimed.lease_token is not None
    await store.request_cancel(entry.id, now=at(1))
    attempt = make_attempt(outcome="failed")
    assert await store.dead_letter(entry.id, claimed.lease_token, error_message="boom", attempt=attempt)
    assert await store.requeue(entry.id, now=at(10))
    stored = await store.get(entry.id)
    assert stored is not None and stored.cancel_requested_at is None


async def test_another_store_on_the_same_database_hears_the_request_promptly(
    store_factory: StoreFactory, tmp_path: Path
) -> None:
    """The holder runs in another process: its store object hears the request within a second, no polling."""
    async with store_factory(tmp_path) as writer:
        if not writer.durable:
            pytest.skip(f"{writer.description} is not durable: another store object does not share its data")
        async with store_factory(tmp_path) as holder:
            entry = make_entry()
            await writer.add([entry])
            await claim(holder)
            heard = asyncio.Event()
            holder.add_finish_listener(entry.id, lambda _: heard.set())
            await asyncio.sleep(0.1)  # the holder's channel is listening
            heard.clear()
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert await writer.request_cancel(entry.id, now=at(1)) is not None
            async with asyncio.timeout(5):
                await heard.wait()
            assert loop.time() - started < 1.0
