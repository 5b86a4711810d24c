"""The store contract, continued: ``add_streamed``, the entries of one ``schedule_many()`` handed over in chunks.

Every store must agree: the entries are stored as one batch (all or none) whichever store writes them while the
next chunk is built; an error raised while building a chunk stores nothing and reaches the caller unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

import pytest

from stores.base import ScheduledCommandStore
from stores.entries import ScheduledCommandEntry

from ._helpers import BASE, PENDING, make_entry


async def _chunks(
    *chunks: Sequence[ScheduledCommandEntry], then: BaseException | None = None
) -> AsyncIterator[Sequence[ScheduledCommandEntry]]:
    for chunk in chunks:
        yield chunk
    if then is not None:
        raise then


async def _stored_count(store: ScheduledCommandStore) -> int:
    return sum((await store.count_by_status()).values())


async def test_add_streamed_stores_every_chunk_field_for_field(store: ScheduledCommandStore) -> None:
    """Chunks of several sizes (one larger than a store's write buffer) are stored in order, field for field."""
    detailed = make_entry(
        priority=-3,
        scheduled_for=BASE + timedelta(microseconds=654321),
        expires_at=BASE + timedelta(days=2),
        max_retries=1,
        correlation_id="batch-1",
        metadata={"tenant": "ü-7"},
        timeout_seconds=1.5,
        queue="reports",
        lock="customer-7",
    )
    first = [make_entry(), detailed]
    second = [make_entry(payload=f'{{"n": {i}, "text": "tab\\there"}}') for i in range(600)]
    third = [make_entry(scheduled_for=BASE - timedelta(seconds=1))]
    entries = [*first, *second, *third]
    assert await store.add_streamed(_chunks(first, [], second, third)) == [e.id for e in entries]
    assert (await store.count_by_status())[PENDING] == len(entries)
    for entry in (*first, second[0], second[-1], *third):
        assert await store.get(entry.id) == entry


async def test_add_streamed_of_no_chunks_stores_nothing(store: ScheduledCommandStore) -> None:
    """No chunks (or only empty ones) store nothing and return no ids."""
    assert await store.add_streamed(_chunks()) == []
    assert await store.add_streamed(_chunks([], [])) == []
    assert await _stored_count(store) == 0


async def test_an_error_while_building_a_chunk_stores_nothing_and_reaches_the_caller(
    store: ScheduledCommandStore,
) -> None:
    """The chunks' own error, raised after some chunks were handed over, is the one raised; nothing is stored and
    the store keeps working."""
    failure = LookupError("no handler for the 41st command")
    with pytest.raises(LookupError) as raised:
        await store.add_streamed(_chunks([make_entry() for _ in range(30)], [make_entry()], then=failure))
    assert raised.value is failure
    assert await _stored_count(store) == 0
    after = make_entry()
    assert await store.add([after]) == [after.id]


async def test_add_streamed_refuses_an_idempotency_key_and_stores_nothing(store: ScheduledCommandStore) -> None:
    """An entry with an idempotency key, in a later chunk, is a ValueError naming it; the earlier chunks are not
    stored either."""
    keyed = make_entry(idempotency_key="welcome:7")
    with pytest.raises(ValueError, match=f"{keyed.id}.*welcome:7"):
        await store.add_streamed(_chunks([make_entry() for _ in range(30)], [make_entry(), keyed]))
    assert await _stored_count(store) == 0


async def test_add_streamed_with_an_id_held_or_repeated_raises_and_stores_nothing(store: ScheduledCommandStore) -> None:
    """An id the store holds, or an id twice across chunks, fails the whole stream: nothing of it is stored."""
    existing = make_entry()
    await store.add([existing])
    repeated = make_entry()
    streams = (
        [[make_entry() for _ in range(30)], [make_entry(id=existing.id, command_type="other")]],
        [[repeated, *(make_entry() for _ in range(30))], [make_entry(id=repeated.id)]],
    )
    for chunks in streams:
        with pytest.raises(ValueError):
            await store.add_streamed(_chunks(*chunks))
        assert await _stored_count(store) == 1
    assert await store.get(existing.id) == existing
