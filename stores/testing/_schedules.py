"""The contract: recurring schedules and their occurrences."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from stores.base import ScheduledCommandStore

from ._helpers import (
    BASE,
    CANCELLED,
    PENDING,
    PROCESSING,
    StoreFactory,
    at,
    claim,
    make_occurrence,
    make_schedule,
)

# -- recurring schedules ------------------------------------------------------------------------------------------


async def test_upsert_schedule_inserts_then_keeps_an_unchanged_definition(store: ScheduledCommandStore) -> None:
    stored = await store.upsert_schedule(make_schedule())
    assert stored == make_schedule()
    again = await store.upsert_schedule(make_schedule(updated_at=at(60)))
    assert again == stored
    assert await store.get_schedule("nightly") == stored
    assert await store.get_schedule("other") is None


async def test_upsert_schedule_with_a_changed_definition_bumps_the_generation(store: ScheduledCommandStore) -> None:
    await store.upsert_schedule(make_schedule())
    await store.set_schedule_paused("nightly", True, now=at(5))
    assert await store.record_schedule_run("nightly", 2, last_run_at=at(1), next_run_at=at(2)) is True
    changed = await store.upsert_schedule(
        make_schedule(interval=timedelta(minutes=5), cron=None, updated_at=at(60), created_at=at(60))
    )
    assert (changed.generation, changed.interval, changed.cron, changed.paused) == (3, timedelta(minutes=5), None, True)
    assert (changed.created_at, changed.updated_at, changed.last_run_at) == (BASE, at(60), at(1))
    assert await store.get_schedule("nightly") == changed
    for field, value in [
        ("payload", '{"a": 1}'),
        ("timezone", "UTC"),
        ("options_json", "{}"),
        ("misfire_policy", "run_all"),
    ]:
        before = await store.get_schedule("nightly")
        assert before is not None
        after = await store.upsert_schedule(before.model_copy(update={field: value}))
        assert after.generation == before.generation + 1


async def test_concurrent_upserts_of_one_new_schedule_store_it_once(
    store_factory: StoreFactory, tmp_path: Path
) -> None:
    async with store_factory(tmp_path) as first:
        others = [store_factory(tmp_path) for _ in range(3)] if first.durable else [first] * 3
        for other in others:
            await other.open()
        try:
            results = await asyncio.gather(*(s.upsert_schedule(make_schedule()) for s in [first, *others]))
            assert {r.generation for r in results} == {1}
            assert len(await first.list_schedules()) == 1
        finally:
            for other in others:
                if other is not first:
                    await other.close()


async def test_list_and_delete_schedules(store: ScheduledCommandStore) -> None:
    for name in ("b", "a", "c"):
        await store.upsert_schedule(make_schedule(name=name))
    assert [s.name for s in await store.list_schedules()] == ["a", "b", "c"]
    assert await store.delete_schedule("b") is True
    assert await store.delete_schedule("b") is False
    assert [s.name for s in await store.list_schedules()] == ["a", "c"]


async def test_set_schedule_paused_bumps_the_generation(store: ScheduledCommandStore) -> None:
    await store.upsert_schedule(make_schedule(next_run_at=at(100)))
    paused = await store.set_schedule_paused("nightly", True, now=at(10))
    assert paused is not None
    assert (paused.paused, paused.generation, paused.updated_at, paused.next_run_at) == (True, 2, at(10), None)
    resumed = await store.set_schedule_paused("nightly", False, now=at(20))
    assert resumed is not None and (resumed.paused, resumed.generation) == (False, 3)
    assert await store.set_schedule_paused("missing", True, now=at(20)) is None


async def test_record_schedule_run_is_fenced_by_generation(store: ScheduledCommandStore) -> None:
    await store.upsert_schedule(make_schedule())
    assert await store.record_schedule_run("nightly", 2, last_run_at=at(1), next_run_at=at(2)) is False
    assert await store.record_schedule_run("nightly", 1, last_run_at=at(1), next_run_at=at(2)) is True
    assert await store.record_schedule_run("nightly", 1, last_run_at=None, next_run_at=at(3)) is True
    stored = await store.get_schedule("nightly")
    assert stored is not None and (stored.last_run_at, stored.next_run_at) == (at(1), at(3))
    assert await store.record_schedule_run("missing", 1, last_run_at=None, next_run_at=None) is False


async def test_occurrence_fields_round_trip_and_their_key_is_unique(store: ScheduledCommandStore) -> None:
    occurrence = make_occurrence("nightly", 1, 60)
    assert await store.add([occurrence]) == [occurrence.id]
    duplicate = make_occurrence("nightly", 1, 60)
    assert await store.add([duplicate]) == [occurrence.id]
    stored = await store.get(occurrence.id)
    assert stored is not None and (stored.recurring_name, stored.occurrence_at) == ("nightly", at(60))
    [claimed] = await claim(store, now=at(60))
    assert (claimed.recurring_name, claimed.occurrence_at) == ("nightly", at(60))


async def test_cancel_occurrences_cancels_pending_ones_of_that_schedule(store: ScheduledCommandStore) -> None:
    old = make_occurrence("nightly", 1, 10)
    current = make_occurrence("nightly", 2, 20)
    other = make_occurrence("night", 1, 10)
    running = make_occurrence("nightly", 1, 0)
    await store.add([running, old, current, other])
    await claim(store, now=at(0))
    cancelled = await store.cancel_occurrences("nightly", now=at(30), keep_generation=2)
    assert [e.id for e in cancelled] == [old.id]
    assert cancelled[0].status is CANCELLED and cancelled[0].completed_at == at(30)
    assert [e.id for e in await store.cancel_occurrences("nightly", now=at(40))] == [current.id]
    assert await store.cancel_occurrences("nightly", now=at(50)) == []
    still = await store.get(other.id)
    assert still is not None and still.status is PENDING
    held = await store.get(running.id)
    assert held is not None and held.status is PROCESSING
