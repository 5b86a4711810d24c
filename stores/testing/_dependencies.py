"""The dependency contract (``add_dependants``: ``ScheduleOptions.after`` and groups), for every store that keeps
dependencies (``supports_dependencies``): ``DependencyContract``. The tests take ``workflow_store``, the store under
test (a fixture of the contract class that skips a store declaring it keeps none).

A dependant waits, WAITING and not claimable, until its parents meet its condition; every parent's outcome updates
it in the transaction that writes the outcome (release at the last parent, cancellation naming the parent when the
condition can no longer hold, cascading), each (parent, dependant) pair counted once.
"""

from __future__ import annotations

import asyncio

import pytest

from stores.base import ScheduledCommandStore
from stores.dependencies import Dependency, UnknownParentError
from stores.entries import ScheduledCommandEntry, ScheduledCommandStatus

from ._helpers import (
    BASE,
    CANCELLED,
    COMPLETED,
    PENDING,
    at,
    claim,
    claimed_ids,
    eventually,
    make_attempt,
    make_entry,
)

WAITING = ScheduledCommandStatus.WAITING


async def status_of(store: ScheduledCommandStore, entry_id: str) -> ScheduledCommandEntry:
    entry = await store.get(entry_id)
    assert entry is not None
    return entry


async def run(
    store: ScheduledCommandStore, entry_id: str, outcome: str = "complete", result: str | None = None
) -> None:
    """Claim every due entry, then end ``entry_id`` with ``outcome`` and release the others."""
    claimed = {entry.id: entry for entry in await claim(store, now=at(10))}
    assert entry_id in claimed, f"{entry_id} was not claimable"
    for other_id, other in claimed.items():
        assert other.lease_token is not None
        if other_id != entry_id:
            assert await store.release(other_id, other.lease_token)
    token = claimed[entry_id].lease_token
    assert token is not None
    if outcome == "complete":
        assert await store.complete(entry_id, token, result_payload=result, attempt=make_attempt(finished=11))
    elif outcome == "dead_letter":
        attempt = make_attempt(outcome="failed", finished=11)
        assert await store.dead_letter(entry_id, token, error_message="RuntimeError: boom", attempt=attempt)
    elif outcome == "expire":
        assert await store.expire(entry_id, token, now=at(11))
    elif outcome == "cancel_claimed":
        attempt = make_attempt(outcome="cancelled", finished=11)
        assert await store.cancel_claimed(entry_id, token, error_message="cancelled", attempt=attempt)
    else:  # pragma: no cover - a typo in a test
        raise AssertionError(outcome)


async def test_a_dependant_waits_unclaimable_and_is_released_by_its_parents_completion(
    workflow_store: ScheduledCommandStore,
) -> None:
    store = workflow_store
    parent, child = make_entry(), make_entry()
    await store.add([parent])
    assert await store.add_dependants([child], {child.id: Dependency((parent.id,))}) == [child.id]
    waiting = await status_of(store, child.id)
    assert waiting.status is WAITING and waiting.pending_parents == 1
    assert (await store.count_by_status())[WAITING] == 1
    assert await store.get_parents(child.id) == [parent.id]
    assert await store.get_dependants(parent.id) == [child.id]
    woken: list[object] = []
    store.add_wakeup_listener(woken.append)
    await run(store, parent.id, result='"42"')
    released = await status_of(store, child.id)
    assert released.status is PENDING and released.pending_parents == 0
    assert woken  # the workers hear of the released dependant
    assert await claimed_ids(store, now=at(20)) == [child.id]


@pytest.mark.parametrize("outcome", ["dead_letter", "expire", "cancel_claimed"])
async def test_a_parent_that_does_not_complete_cancels_the_dependant_naming_it_and_cascades(
    workflow_store: ScheduledCommandStore, outcome: str
) -> None:
    store = workflow_store
    parent, child, grandchild, callback = make_entry(), make_entry(), make_entry(), make_entry()
    await store.add([parent])
    after = {
        child.id: Dependency((parent.id,)),
        grandchild.id: Dependency((child.id,)),
        callback.id: Dependency((grandchild.id,), on_success_only=False),
    }
    await store.add_dependants([child, grandchild, callback], after)
    finished: list[str] = []
    store.add_finish_listener(child.id, finished.append)
    await run(store, parent.id, outcome)
    cancelled = await status_of(store, child.id)
    assert cancelled.status is CANCELLED and cancelled.completed_at is not None
    assert cancelled.error_message is not None and parent.id in cancelled.error_message
    cascaded = await status_of(store, grandchild.id)
    assert cascaded.status is CANCELLED and cascaded.error_message is not None and child.id in cascaded.error_message
    # The callback runs on any outcome: its parent's cancellation releases it.
    assert (await status_of(store, callback.id)).status is PENDING
    await eventually(lambda: child.id in finished)


async def test_an_operator_cancel_of_a_parent_cancels_its_dependants(workflow_store: ScheduledCommandStore) -> None:
    store = workflow_store
    parent, child = make_entry(scheduled_for=at(3600)), make_entry()
    await store.add([parent])
    await store.add_dependants([child], {child.id: Dependency((parent.id,))})
    assert await store.cancel(parent.id, now=at(5)) is not None
    child_now = await status_of(store, child.id)
    assert child_now.status is CANCELLED and child_now.completed_at == at(5)


async def test_a_waiting_dependant_can_be_cancelled(workflow_store: ScheduledCommandStore) -> None:
    store = workflow_store
    parent, child = make_entry(), make_entry()
    await store.add([parent])
    await store.add_dependants([child], {child.id: Dependency((parent.id,))})
    cancelled = await store.cancel(child.id, now=at(1))
    assert cancelled is not None and cancelled.status is CANCELLED
    await run(store, parent.id)
    assert (await status_of(store, child.id)).status is CANCELLED  # the parent's completion does not revive it


async def test_a_fan_in_is_released_by_its_last_member_only(workflow_store: ScheduledCommandStore) -> None:
    store = workflow_store
    members = [make_entry(priority=i) for i in range(5)]
    callback = make_entry()
    after = {callback.id: Dependency(tuple(m.id for m in members), on_success_only=False)}
    assert await store.add_dependants([*members, callback], after) == [*(m.id for m in members), callback.id]
    outcomes = ["complete", "dead_letter", "complete", "expire", "complete"]
    for number, (member, outcome) in enumerate(zip(members, outcomes, strict=True)):
        stored = await status_of(store, callback.id)
        assert stored.status is WAITING and stored.pending_parents == len(members) - number
        await run(store, member.id, outcome)
    assert (await status_of(store, callback.id)).status is PENDING
    assert await store.get_parents(callback.id) == [m.id for m in members]


async def test_a_batch_of_outcomes_releases_a_dependant_of_several_of_them_once(
    workflow_store: ScheduledCommandStore,
) -> None:
    """Two parents completed concurrently (one batch of the group commit on SQL stores) count once each."""
    store = workflow_store
    first, second, child = make_entry(), make_entry(), make_entry()
    await store.add([first, second])
    await store.add_dependants([child], {child.id: Dependency((first.id, second.id))})
    claimed = await claim(store, now=at(10))
    await asyncio.gather(
        *(
            store.complete(entry.id, entry.lease_token or "", result_payload=None, attempt=make_attempt())
            for entry in claimed
        )
    )
    released = await status_of(store, child.id)
    assert released.status is PENDING and released.pending_parents == 0


async def test_scheduling_after_finished_parents_resolves_at_once(workflow_store: ScheduledCommandStore) -> None:
    store = workflow_store
    done, failed = make_entry(), make_entry()
    await store.add([done, failed])
    await run(store, done.id)
    await run(store, failed.id, "dead_letter")
    after_done, after_failed, after_any = make_entry(), make_entry(), make_entry()
    after = {
        after_done.id: Dependency((done.id,)),
        after_failed.id: Dependency((failed.id,)),
        after_any.id: Dependency((done.id, failed.id), on_success_only=False),
    }
    await store.add_dependants([after_done, after_failed, after_any], after)
    assert (await status_of(store, after_done.id)).status is PENDING
    cancelled = await status_of(store, after_failed.id)
    assert cancelled.status is CANCELLED and failed.id in (cancelled.error_message or "")
    assert cancelled.completed_at == BASE  # its scheduling time
    assert (await status_of(store, after_any.id)).status is PENDING


async def test_a_requeued_parent_does_not_count_twice(workflow_store: ScheduledCommandStore) -> None:
    """A dead letter releases an any-outcome dependant once; requeued and completed, it counts no second time."""
    store = workflow_store
    flaky, slow, callback = make_entry(), make_entry(scheduled_for=at(3600)), make_entry()
    await store.add([flaky, slow])
    await store.add_dependants([callback], {callback.id: Dependency((flaky.id, slow.id), on_success_only=False)})
    await run(store, flaky.id, "dead_letter")
    assert await store.requeue(flaky.id, now=at(12))
    claimed = {e.id: e for e in await claim(store, now=at(20))}
    token = claimed[flaky.id].lease_token
    assert token is not None
    assert await store.complete(flaky.id, token, result_payload=None, attempt=make_attempt(2, finished=21))
    waiting = await status_of(store, callback.id)
    assert waiting.status is WAITING and waiting.pending_parents == 1


async def test_an_unknown_parent_is_refused_and_nothing_is_stored(workflow_store: ScheduledCommandStore) -> None:
    store = workflow_store
    member, child = make_entry(), make_entry()
    with pytest.raises(UnknownParentError, match="no-such-entry"):
        await store.add_dependants([member, child], {child.id: Dependency((member.id, "no-such-entry"))})
    assert await store.get(member.id) is None and await store.get(child.id) is None


async def test_a_dependant_in_the_batch_waits_for_a_parent_of_the_same_batch(
    workflow_store: ScheduledCommandStore,
) -> None:
    store = workflow_store
    first, second, third = make_entry(), make_entry(), make_entry()
    after = {second.id: Dependency((first.id,)), third.id: Dependency((second.id,))}
    await store.add_dependants([first, second, third], after)
    assert [e.id for e in await claim(store, now=at(10))] == [first.id]
    assert (await status_of(store, third.id)).pending_parents == 1
    assert (await status_of(store, second.id)).status is WAITING


async def test_purging_a_dependant_forgets_its_pairs_and_a_purged_parent_is_still_named(
    workflow_store: ScheduledCommandStore,
) -> None:
    store = workflow_store
    parent, child = make_entry(), make_entry()
    await store.add([parent])
    await store.add_dependants([child], {child.id: Dependency((parent.id,))})
    await run(store, parent.id)
    assert await store.purge(older_than=at(100), statuses=[COMPLETED]) == 1  # the parent (the child is PENDING)
    assert await store.get_parents(child.id) == [parent.id]
    assert await store.cancel(child.id, now=at(50)) is not None
    assert await store.purge(older_than=at(100)) == 1
    assert await store.get_parents(child.id) == []
