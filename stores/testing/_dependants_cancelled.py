"""The dependants a store cancels because of a parent are reported to its ``DependantsCancelledListener``, once
each, after the commit, by the store instance that cancelled them, from every path that ends a parent: a worker's
outcome (alone or in a batch), an operator or correlation cancel, an insert after a parent that already failed.
Part of ``DependencyContract``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from stores.base import ScheduledCommandStore
from stores.dependencies import Dependency
from stores.entries import ScheduledCommandEntry

from ._dependencies import run, status_of
from ._helpers import CANCELLED, at, claim, make_attempt, make_entry


class Heard:
    """What the listener was told, and what the store held for each entry at that moment."""

    def __init__(self, store: ScheduledCommandStore) -> None:
        self.entries: list[ScheduledCommandEntry] = []
        store.set_dependants_cancelled_listener(self, self.entries.extend)

    def ids(self) -> list[str]:
        return [entry.id for entry in self.entries]


@pytest.mark.parametrize("outcome", ["dead_letter", "expire", "cancel_claimed"])
async def test_a_parents_outcome_reports_the_dependants_it_cancelled_and_the_cascade(
    workflow_store: ScheduledCommandStore, outcome: str
) -> None:
    store = workflow_store
    parent, child, grandchild, callback = make_entry(), make_entry(), make_entry(), make_entry()
    await store.add([parent])
    after = {
        child.id: Dependency((parent.id,)),
        grandchild.id: Dependency((child.id,)),
        callback.id: Dependency((grandchild.id,), on_success_only=False),  # released, not cancelled: not reported
    }
    await store.add_dependants([child, grandchild, callback], after)
    heard = Heard(store)
    await run(store, parent.id, outcome)
    assert sorted(heard.ids()) == sorted([child.id, grandchild.id])
    by_id = {entry.id: entry for entry in heard.entries}
    assert by_id[child.id].status is CANCELLED and f"parent {parent.id} ended" in (by_id[child.id].error_message or "")
    assert f"parent {child.id} ended CANCELLED" in (by_id[grandchild.id].error_message or "")
    for entry in heard.entries:  # as stored
        assert entry == await status_of(store, entry.id)


async def test_a_completed_parent_reports_nothing(workflow_store: ScheduledCommandStore) -> None:
    store = workflow_store
    parent, child = make_entry(), make_entry()
    await store.add([parent])
    await store.add_dependants([child], {child.id: Dependency((parent.id,))})
    heard = Heard(store)
    await run(store, parent.id)
    assert heard.entries == []


async def test_a_batch_of_failed_parents_reports_each_dependant_once(workflow_store: ScheduledCommandStore) -> None:
    """Outcomes that arrive together (one batch of the group commit on SQL stores)."""
    store = workflow_store
    parents = [make_entry() for _ in range(4)]
    children = [make_entry() for _ in parents]
    both = make_entry()  # a dependant of two of the failing parents: cancelled (and reported) once
    await store.add(parents)
    after = {child.id: Dependency((parent.id,)) for parent, child in zip(parents, children, strict=True)}
    after[both.id] = Dependency((parents[0].id, parents[1].id))
    await store.add_dependants([*children, both], after)
    heard = Heard(store)
    claimed = await claim(store, now=at(10))
    assert len(claimed) == len(parents)
    attempt = make_attempt(outcome="failed", finished=11)
    error = "RuntimeError: x"
    results = await asyncio.gather(
        *(store.dead_letter(e.id, e.lease_token or "", error_message=error, attempt=attempt) for e in claimed)
    )
    assert all(results)
    assert sorted(heard.ids()) == sorted([*(child.id for child in children), both.id])


async def test_an_operator_or_correlation_cancel_reports_the_dependants_not_the_entry_itself(
    workflow_store: ScheduledCommandStore,
) -> None:
    store = workflow_store
    first, second = make_entry(scheduled_for=at(3600)), make_entry(scheduled_for=at(3600), correlation_id="order-7")
    first_child, second_child = make_entry(), make_entry()
    await store.add([first, second])
    after = {first_child.id: Dependency((first.id,)), second_child.id: Dependency((second.id,))}
    await store.add_dependants([first_child, second_child], after)
    heard = Heard(store)
    assert await store.cancel(first.id, now=at(5)) is not None
    assert heard.ids() == [first_child.id]
    assert [entry.id for entry in await store.cancel_by_correlation_id("order-7", now=at(6))] == [second.id]
    assert heard.ids() == [first_child.id, second_child.id]
    assert heard.entries[1].completed_at == at(6)


async def test_scheduling_after_a_failed_parent_reports_the_dependant(workflow_store: ScheduledCommandStore) -> None:
    store = workflow_store
    parent = make_entry()
    await store.add([parent])
    await run(store, parent.id, "dead_letter")
    heard = Heard(store)
    child = make_entry()
    await store.add_dependants([child], {child.id: Dependency((parent.id,))})
    assert heard.ids() == [child.id]
    assert heard.entries[0].status is CANCELLED


async def test_one_listener_per_key(workflow_store: ScheduledCommandStore) -> None:
    store = workflow_store
    calls: list[str] = []

    def first(entries: Sequence[ScheduledCommandEntry]) -> None:
        calls.append("first")

    def second(entries: Sequence[ScheduledCommandEntry]) -> None:
        calls.append("second")

    store.set_dependants_cancelled_listener("app", first)
    store.set_dependants_cancelled_listener("app", second)  # replaces the first
    parent, child, other_parent, other_child = make_entry(), make_entry(), make_entry(), make_entry()
    await store.add([parent, other_parent])
    after = {child.id: Dependency((parent.id,)), other_child.id: Dependency((other_parent.id,))}
    await store.add_dependants([child, other_child], after)
    await store.cancel(parent.id, now=at(1))
    assert calls == ["second"]
    store.set_dependants_cancelled_listener("app", None)
    await store.cancel(other_parent.id, now=at(2))
    assert calls == ["second"]
