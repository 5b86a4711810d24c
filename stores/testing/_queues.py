"""The store contract of queues, routing, pausing and locks (``claim_due(route=...)``, ``set_queue_paused``,
``list_queues``), asserted identically for every store: ``QueueContract``. The tests take ``fleet_store``, the
store under test (a fixture of the contract class).
"""

from __future__ import annotations

from typing import Any

import pytest

from stores.base import ScheduledCommandStore
from stores.queues import QueueInfo, Route

from ._helpers import BASE, LEASE, PENDING, PROCESSING, WORKER, at, make_attempt, make_entry

EMAIL = "tests.stores.SendEmail"
REPORT = "tests.stores.BuildReport"


async def claim_ids(store: ScheduledCommandStore, route: Route | None = None, **kwargs: Any) -> list[str]:
    claimed = await store.claim_due(
        now=kwargs.pop("now", BASE),
        limit=kwargs.pop("limit", 100),
        worker_id=WORKER,
        lease_duration=LEASE,
        route=route,
    )
    return [entry.id for entry in claimed]


async def test_queue_and_lock_round_trip(fleet_store: ScheduledCommandStore) -> None:
    plain, routed = make_entry(), make_entry(queue="emails", lock="customer:42")
    await fleet_store.add([plain, routed])
    stored = await fleet_store.get(routed.id)
    assert stored is not None and (stored.queue, stored.lock) == ("emails", "customer:42")
    stored = await fleet_store.get(plain.id)
    assert stored is not None and (stored.queue, stored.lock) == ("default", None)


async def test_claim_takes_only_the_route_queues(fleet_store: ScheduledCommandStore) -> None:
    emails, reports, default = make_entry(queue="emails"), make_entry(queue="reports"), make_entry()
    await fleet_store.add([emails, reports, default])
    assert await claim_ids(fleet_store, Route.of(["emails", "nothing-here"], None)) == [emails.id]
    assert sorted(await claim_ids(fleet_store, Route.of(None, None))) == sorted([reports.id, default.id])


async def test_claim_takes_only_the_route_command_types(fleet_store: ScheduledCommandStore) -> None:
    """Routing by handler: an entry of a type the worker has no handler for is not claimed and stays PENDING."""
    email, report = make_entry(command_type=EMAIL), make_entry(command_type=REPORT, priority=5)
    await fleet_store.add([email, report])
    assert await claim_ids(fleet_store, Route.of(None, [EMAIL])) == [email.id]
    assert await claim_ids(fleet_store, Route.of(None, [EMAIL])) == []
    waiting = await fleet_store.get(report.id)
    assert waiting is not None and waiting.status is PENDING and waiting.attempt_count == 0
    assert await claim_ids(fleet_store, Route.of(["default"], [REPORT, EMAIL])) == [report.id]


async def test_routed_claim_keeps_priority_and_due_order_across_queues_and_types(
    fleet_store: ScheduledCommandStore,
) -> None:
    entries = [
        make_entry(queue="a", command_type=EMAIL, priority=1, scheduled_for=at(2)),
        make_entry(queue="b", command_type=REPORT, priority=1, scheduled_for=at(1)),
        make_entry(queue="b", command_type=EMAIL, priority=3, scheduled_for=at(3)),
        make_entry(queue="a", command_type=REPORT, priority=0, scheduled_for=at(0)),
        make_entry(queue="c", command_type=EMAIL, priority=9, scheduled_for=at(0)),
        make_entry(queue="a", command_type=EMAIL, priority=1, scheduled_for=at(9)),  # not due
    ]
    await fleet_store.add(entries)
    route = Route.of(["a", "b"], [EMAIL, REPORT])
    assert await claim_ids(fleet_store, route, now=at(5), limit=2) == [entries[2].id, entries[1].id]
    assert await claim_ids(fleet_store, route, now=at(5)) == [entries[0].id, entries[3].id]


async def test_a_paused_queue_is_not_claimed_until_resumed(fleet_store: ScheduledCommandStore) -> None:
    emails, other = make_entry(queue="emails"), make_entry(queue="other")
    await fleet_store.add([emails, other])
    await fleet_store.set_queue_paused("emails", True)
    assert await claim_ids(fleet_store) == [other.id]
    assert await claim_ids(fleet_store, Route.of(["emails"], None)) == []
    await fleet_store.set_queue_paused("emails", False)
    assert await claim_ids(fleet_store) == [emails.id]


async def test_pausing_leaves_running_entries_alone(fleet_store: ScheduledCommandStore) -> None:
    entry = make_entry(queue="emails")
    await fleet_store.add([entry])
    (claimed,) = await fleet_store.claim_due(now=BASE, limit=1, worker_id=WORKER, lease_duration=LEASE)
    await fleet_store.set_queue_paused("emails", True)
    assert claimed.lease_token is not None
    assert await fleet_store.complete(entry.id, claimed.lease_token, result_payload=None, attempt=make_attempt())


async def test_pause_refuses_a_bad_queue_name(fleet_store: ScheduledCommandStore) -> None:
    with pytest.raises(ValueError, match="'bad name!'"):
        await fleet_store.set_queue_paused("bad name!", True)


async def test_list_queues_reports_depth_running_and_paused(fleet_store: ScheduledCommandStore) -> None:
    await fleet_store.add([make_entry(queue="emails") for _ in range(3)] + [make_entry()])
    await claim_ids(fleet_store, Route.of(["emails"], None), limit=1)
    await fleet_store.set_queue_paused("idle", True)
    assert await fleet_store.list_queues() == [
        QueueInfo(name="default", depth=1),
        QueueInfo(name="emails", depth=2, running=1),
        QueueInfo(name="idle", paused=True),
    ]
    await fleet_store.set_queue_paused("idle", False)
    assert [queue.name for queue in await fleet_store.list_queues()] == ["default", "emails"]


async def test_one_entry_per_lock_runs_at_a_time(fleet_store: ScheduledCommandStore) -> None:
    """Entries sharing a lock: one per claim, none while one is PROCESSING; the others wait, spending nothing."""
    first, second = (
        make_entry(lock="customer:42", scheduled_for=at(0)),
        make_entry(lock="customer:42", scheduled_for=at(1)),
    )
    free = make_entry(scheduled_for=at(2))
    await fleet_store.add([first, second, free])
    assert await claim_ids(fleet_store, now=at(5)) == [first.id, free.id]
    assert await claim_ids(fleet_store, now=at(5)) == []
    waiting = await fleet_store.get(second.id)
    assert waiting is not None and waiting.status is PENDING and waiting.attempt_count == 0
    held = await fleet_store.get(first.id)
    assert held is not None and held.lease_token is not None
    assert await fleet_store.complete(first.id, held.lease_token, result_payload=None, attempt=make_attempt())
    assert await claim_ids(fleet_store, now=at(5)) == [second.id]


async def test_a_lock_is_held_across_queues_and_released_by_every_outcome(fleet_store: ScheduledCommandStore) -> None:
    entries = [make_entry(lock="L", queue=f"q{i}", scheduled_for=at(i)) for i in range(4)]
    await fleet_store.add(entries)
    (one,) = await fleet_store.claim_due(now=at(9), limit=10, worker_id=WORKER, lease_duration=LEASE)
    assert one.id == entries[0].id and one.lease_token is not None
    assert await fleet_store.release(one.id, one.lease_token)  # back to PENDING: the lock is free again
    (again,) = await fleet_store.claim_due(now=at(9), limit=10, worker_id=WORKER, lease_duration=LEASE)
    assert again.id == entries[0].id and again.lease_token is not None
    failure = make_attempt(outcome="failed")
    assert await fleet_store.retry_later(again.id, again.lease_token, due=at(20), error_message="x", attempt=failure)
    (third,) = await fleet_store.claim_due(now=at(9), limit=10, worker_id=WORKER, lease_duration=LEASE)
    assert third.id == entries[1].id and third.status is PROCESSING and third.lease_token is not None
    assert await fleet_store.dead_letter(third.id, third.lease_token, error_message="x", attempt=failure)
    assert await claim_ids(fleet_store, now=at(9)) == [entries[2].id]


async def test_a_claim_fills_its_batch_past_entries_of_a_lock_it_took(fleet_store: ScheduledCommandStore) -> None:
    """The second entry of a lock does not take a place in the batch: the next free entry does."""
    first, second = make_entry(lock="L", scheduled_for=at(0)), make_entry(lock="L", scheduled_for=at(1))
    free = make_entry(scheduled_for=at(2))
    await fleet_store.add([first, second, free])
    assert await claim_ids(fleet_store, now=at(5), limit=2) == [first.id, free.id]


async def test_a_claim_across_many_command_types_keeps_the_due_order(fleet_store: ScheduledCommandStore) -> None:
    """Entries of 30 command types in 2 queues, due interleaved, some sharing locks: batch after batch, the claim
    takes them in due order across every type, one per lock, skipping the types its route leaves out."""
    types = [f"tests.stores.Type{n:02d}" for n in range(30)]
    entries = [
        make_entry(
            command_type=types[n % 30],
            queue=("a", "b")[n % 2],
            scheduled_for=at(n),
            lock=f"L{n % 7}" if n % 5 == 0 else None,
        )
        for n in range(120)
    ]
    await fleet_store.add(entries)
    route = Route.of(["a", "b"], types[:25])
    expected = [e for e in entries if e.command_type in set(types[:25])]
    taken: list[str] = []
    while True:
        batch = await fleet_store.claim_due(now=at(500), limit=7, worker_id=WORKER, lease_duration=LEASE, route=route)
        if not batch:
            break
        held = [e.lock for e in batch if e.lock is not None]
        assert len(held) == len(set(held)), "two entries of one lock in one claim"
        taken += [e.id for e in batch]
        for claimed in batch:  # done: its lock is free for the next batch
            assert claimed.lease_token is not None
            assert await fleet_store.complete(
                claimed.id, claimed.lease_token, result_payload=None, attempt=make_attempt()
            )
    assert sorted(taken) == sorted(e.id for e in expected)
    unlocked = [e.id for e in expected if e.lock is None]
    assert [entry_id for entry_id in taken if entry_id in set(unlocked)] == unlocked
