"""The contract of a store's finish listeners (``add_finish_listener``): ``FinishListenerContract``.

A listener registered for an entry id is called when that entry reaches a terminal status, whichever transition
took it there, and is not called for transitions that leave it running or waiting. On the stores shared between
processes (``durable``), a second store object on the same database (another connection: a LISTEN, the SQLite
commit watcher, a pub/sub subscription) hears a finish written through the first one, promptly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from stores.base import ScheduledCommandStore

from ._helpers import BASE, StoreFactory, at, claim, make_attempt, make_entry

#: Each way an entry reaches a terminal status, from PENDING.
Finisher = Callable[[ScheduledCommandStore, str], Awaitable[object]]


async def _complete(store: ScheduledCommandStore, entry_id: str) -> object:
    (claimed,) = await claim(store)
    assert claimed.lease_token is not None
    return await store.complete(entry_id, claimed.lease_token, result_payload="42", attempt=make_attempt())


async def _dead_letter(store: ScheduledCommandStore, entry_id: str) -> object:
    (claimed,) = await claim(store)
    assert claimed.lease_token is not None
    attempt = make_attempt(outcome="failed")
    return await store.dead_letter(entry_id, claimed.lease_token, error_message="boom", attempt=attempt)


async def _expire(store: ScheduledCommandStore, entry_id: str) -> object:
    (claimed,) = await claim(store)
    assert claimed.lease_token is not None
    return await store.expire(entry_id, claimed.lease_token, now=at(1))


async def _cancel(store: ScheduledCommandStore, entry_id: str) -> object:
    return await store.cancel(entry_id, now=at(1))


async def _cancel_by_correlation(store: ScheduledCommandStore, entry_id: str) -> object:
    return await store.cancel_by_correlation_id("corr-1", now=at(1))


async def _cancel_occurrence(store: ScheduledCommandStore, entry_id: str) -> object:
    return await store.cancel_occurrences("nightly", now=at(1))


FINISHERS: dict[str, Finisher] = {
    "complete": _complete,
    "dead_letter": _dead_letter,
    "expire": _expire,
    "cancel": _cancel,
    "cancel_by_correlation_id": _cancel_by_correlation,
    "cancel_occurrences": _cancel_occurrence,
}


@pytest.mark.parametrize("finisher", list(FINISHERS))
async def test_a_finish_calls_the_entry_s_listeners_once_and_no_other(
    store: ScheduledCommandStore, finisher: str
) -> None:
    """Every transition to a terminal status calls the listeners of that entry (with its id), not of others."""
    entry = make_entry(correlation_id="corr-1", recurring_name="nightly", occurrence_at=BASE, occurrence_generation=1)
    other = make_entry(scheduled_for=at(3600))
    await store.add([entry, other])
    heard: list[str] = []
    store.add_finish_listener(entry.id, heard.append)
    store.add_finish_listener(other.id, heard.append)
    await FINISHERS[finisher](store, entry.id)
    async with asyncio.timeout(5):  # a shared store may also hear its own finish back from the database
        while entry.id not in heard:
            await asyncio.sleep(0.01)
    assert set(heard) == {entry.id}


async def test_dismissing_a_dead_letter_calls_the_listeners(store: ScheduledCommandStore) -> None:
    """FAILED -> CANCELLED is a finish too (a waiter that missed the failure learns the entry is cancelled)."""
    entry = make_entry(max_retries=0)
    await store.add([entry])
    await _dead_letter(store, entry.id)
    heard: list[str] = []
    store.add_finish_listener(entry.id, heard.append)
    assert await store.dismiss(entry.id, now=at(2)) is not None
    async with asyncio.timeout(5):
        while entry.id not in heard:
            await asyncio.sleep(0.01)


async def test_retry_release_and_requeue_call_no_listener(store: ScheduledCommandStore) -> None:
    """An entry that will run again has not finished: retry_later, release and requeue call nobody."""
    entry = make_entry()
    await store.add([entry])
    heard: list[str] = []
    store.add_finish_listener(entry.id, heard.append)
    (claimed,) = await claim(store)
    assert claimed.lease_token is not None
    attempt = make_attempt(outcome="failed")
    assert await store.retry_later(entry.id, claimed.lease_token, due=BASE, error_message="x", attempt=attempt)
    (claimed,) = await claim(store)
    assert claimed.lease_token is not None
    assert await store.release(entry.id, claimed.lease_token)
    await asyncio.sleep(0.2)  # long enough for a notification from another connection, were one sent
    assert heard == []


async def test_a_removed_listener_is_not_called(store: ScheduledCommandStore) -> None:
    """remove_finish_listener stops the calls; removing one that is not registered is harmless."""
    entry = make_entry()
    await store.add([entry])
    heard: list[str] = []
    store.add_finish_listener(entry.id, heard.append)
    store.remove_finish_listener(entry.id, heard.append)
    store.remove_finish_listener(entry.id, heard.append)
    store.remove_finish_listener("unknown", heard.append)
    await store.cancel(entry.id, now=at(1))
    await asyncio.sleep(0.2)
    assert heard == []


@pytest.mark.parametrize("finisher", ["complete", "dead_letter", "cancel"])
async def test_another_store_on_the_same_database_hears_the_finish_promptly(
    store_factory: StoreFactory, tmp_path: Path, finisher: str
) -> None:
    """A finish written through one store object wakes the listeners of another on the same database (another
    process, in production) through the store's own channel, within a fraction of a second: no polling."""
    async with store_factory(tmp_path) as writer:
        if not writer.durable:
            pytest.skip(f"{writer.description} is not durable: another store object does not share its data")
        async with store_factory(tmp_path) as watcher:
            entry = make_entry()
            await writer.add([entry])
            heard = asyncio.Event()
            watcher.add_finish_listener(entry.id, lambda _: heard.set())
            assert await watcher.get(entry.id) is not None  # opened and watching
            await asyncio.sleep(0.1)  # the watcher's channel is listening (it re-checks once it is, too)
            heard.clear()
            loop = asyncio.get_running_loop()
            started = loop.time()
            await FINISHERS[finisher](writer, entry.id)
            async with asyncio.timeout(5):
                await heard.wait()
            assert loop.time() - started < 1.0


async def test_the_listening_starts_with_a_check_of_what_already_finished(
    store_factory: StoreFactory, tmp_path: Path
) -> None:
    """A listener registered on a store that was not yet listening still hears an entry that finished before
    the store's channel was up (the store re-checks the watched ids once listening)."""
    async with store_factory(tmp_path) as writer:
        if not writer.durable:
            pytest.skip(f"{writer.description} is not durable: another store object does not share its data")
        entry = make_entry()
        await writer.add([entry])
        watcher = store_factory(tmp_path)
        heard = asyncio.Event()
        watcher.add_finish_listener(entry.id, lambda _: heard.set())
        await writer.cancel(entry.id, now=at(1))
        async with watcher:
            async with asyncio.timeout(5):
                await heard.wait()
