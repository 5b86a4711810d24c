"""The store contract, continued: ``add`` called by many coroutines at once, as a busy web process schedules.

Every store must agree: each call returns its own ids once its entries are stored, an entry that cannot be stored (an
id already held) fails only its own call, and a single entry is stored field for field whichever path it takes.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from stores.base import ScheduledCommandStore

from ._helpers import BASE, PENDING, make_entry


async def test_one_entry_with_every_field_is_stored_field_for_field(store: ScheduledCommandStore) -> None:
    """``add`` of a single entry (``schedule()``'s call) keeps every field, microseconds included."""
    entry = make_entry(
        priority=-7,
        scheduled_for=BASE + timedelta(microseconds=123457),
        created_at=BASE - timedelta(seconds=3, microseconds=1),
        expires_at=BASE + timedelta(days=400),
        max_retries=0,
        correlation_id="order-9",
        metadata={"tenant": "ü-42", "empty": ""},
        timeout_seconds=0.25,
        recurring_name="nightly",
        occurrence_at=BASE,
        occurrence_generation=3,
    )
    assert await store.add([entry]) == [entry.id]
    assert await store.get(entry.id) == entry


async def test_concurrent_adds_each_return_their_own_ids_and_all_are_stored(store: ScheduledCommandStore) -> None:
    """100 coroutines adding at once: each gets its own ids back and every entry is stored once."""
    batches = [[make_entry(scheduled_for=BASE + timedelta(seconds=i))] for i in range(90)]
    batches += [[make_entry(), make_entry()] for _ in range(5)]
    batches += [  # every field, in calls written together with the others
        [
            make_entry(
                priority=i - 2,
                scheduled_for=BASE + timedelta(microseconds=i + 1),
                expires_at=BASE + timedelta(days=1, microseconds=7),
                max_retries=i,
                correlation_id=f"c-{i}",
                metadata={"tenant": "ü", "quote": 'a"b\\c\n'},
                timeout_seconds=1.5 * (i + 1),
                recurring_name="hourly",
                occurrence_at=BASE - timedelta(hours=i),
                occurrence_generation=i,
            )
        ]
        for i in range(5)
    ]
    results = await asyncio.gather(*(store.add(batch) for batch in batches))
    assert results == [[e.id for e in batch] for batch in batches]
    for batch in batches:
        for entry in batch:
            assert await store.get(entry.id) == entry
    assert (await store.count_by_status())[PENDING] == 105


async def test_an_id_already_stored_fails_only_its_own_concurrent_call(store: ScheduledCommandStore) -> None:
    """Among adds arriving together, the one whose id is already held fails; the others are stored."""
    existing = make_entry(command_type="tests.stores.Original")
    await store.add([existing])
    good = [make_entry() for _ in range(30)]
    clash = make_entry(id=existing.id, command_type="tests.stores.Other")
    calls = [store.add([e]) for e in good[:15]] + [store.add([clash])] + [store.add([e]) for e in good[15:]]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[15], Exception), results[15]
    assert [r for i, r in enumerate(results) if i != 15] == [[e.id] for e in good]
    for entry in good:
        assert await store.get(entry.id) == entry
    assert await store.get(existing.id) == existing
    assert (await store.count_by_status())[PENDING] == 31


async def test_the_same_new_id_in_two_concurrent_calls_is_stored_once(store: ScheduledCommandStore) -> None:
    """Two calls racing with one new id: exactly one succeeds, and the stored entry is the winner's."""
    entry_id = str(uuid.uuid4())
    first = make_entry(id=entry_id, command_type="tests.stores.First")
    second = make_entry(id=entry_id, command_type="tests.stores.Second")
    bystander = make_entry()
    results = await asyncio.gather(
        store.add([first]), store.add([bystander]), store.add([second]), return_exceptions=True
    )
    assert results[1] == [bystander.id]
    won = [e for e, r in ((first, results[0]), (second, results[2])) if r == [entry_id]]
    assert len(won) == 1, results
    assert await store.get(entry_id) == won[0]
    assert (await store.count_by_status())[PENDING] == 2


@pytest.mark.parametrize("callers", [10])
async def test_concurrent_adds_of_one_idempotency_key_store_one_entry(
    store: ScheduledCommandStore, callers: int
) -> None:
    """Callers racing with the same idempotency key all get the id of the one entry stored."""
    entries = [make_entry(idempotency_key="signup:7") for _ in range(callers)]
    results = await asyncio.gather(*(store.add([e]) for e in entries))
    holder = {ids[0] for ids in results}
    assert len(holder) == 1
    assert holder <= {e.id for e in entries}
    assert (await store.count_by_status())[PENDING] == 1
