"""The store contract and every optional feature's suite, asserted identically for every store in
``STORE_FACTORIES`` (``conftest.py``): the suites are the ones shipped for custom stores, ``stores.testing``
(``EveryFeatureContract``). Here too: the ABC's default operator queries agree with
MemoryStore's own answers."""

from __future__ import annotations

from datetime import timedelta

from stores import MemoryStore, ScheduledCommandStore
from stores.testing import BASE, EveryFeatureContract
from stores.testing._helpers import CANCELLED, COMPLETED, EXPIRED, FAILED, add_and_claim, at, entry_in_status, finish_at


class TestStoreContract(EveryFeatureContract):
    """``stores.testing``'s suites; ``store_factory`` comes from ``conftest.py``, once per store."""


class _StoreWithBaseThroughput(MemoryStore):
    """A store that answers throughput with the ABC's default (built on ``list_entries``), as a new store would."""

    count_finished_since = ScheduledCommandStore.count_finished_since


async def test_the_default_count_finished_since_agrees_with_the_stores() -> None:
    """The ABC's default implementation gives what MemoryStore's own does."""
    plain, memory = _StoreWithBaseThroughput(), MemoryStore()
    for target in (plain, memory):
        for status, seconds in ((CANCELLED, -1), (COMPLETED, 0), (FAILED, 59.5), (EXPIRED, 60), (COMPLETED, 61)):
            await finish_at(target, status, seconds)
    minute = timedelta(minutes=1)
    expected = await memory.count_finished_since(BASE, bucket=minute)
    assert len(expected) == 4
    assert await plain.count_finished_since(BASE, bucket=minute) == expected


async def test_count_running_through_the_default_agrees_with_the_stores() -> None:
    """The ABC's default (built on ``list_entries``) gives what MemoryStore's own does."""

    class StoreWithBaseCount(MemoryStore):
        count_running = ScheduledCommandStore.count_running

    plain, memory = StoreWithBaseCount(), MemoryStore()
    for target in (plain, memory):
        await add_and_claim(target)
        await add_and_claim(target, scheduled_for=at(30))
        await entry_in_status(target, COMPLETED)
    for now in (BASE, at(60), at(90)):
        assert await plain.count_running(now=now) == await memory.count_running(now=now)
    assert [await plain.count_running(now=now) for now in (BASE, at(60), at(90))] == [2, 1, 0]
