"""The contract: attempts, counts, listing, the next due time, purging and wake-ups."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

from stores.base import ScheduledCommandStore
from stores.entries import TERMINAL_STATUSES, ScheduledCommandStatus

from ._helpers import (
    BASE,
    CANCELLED,
    COMPLETED,
    EXPIRED,
    FAILED,
    PENDING,
    PROCESSING,
    add_and_claim,
    at,
    claim,
    claimed_ids,
    entry_in_status,
    eventually,
    make_attempt,
    make_entry,
)

# -- attempts, counts, listing ---------------------------------------------------------------------------------


async def test_get_attempts_oldest_first(store: ScheduledCommandStore) -> None:
    """Every attempt is recorded and ``get_attempts`` returns them oldest first."""
    entry = make_entry()
    await store.add([entry])
    recorded = []
    for number in (1, 2):
        (claimed,) = await claim(store, now=at(100 * number))
        assert claimed.lease_token is not None
        attempt = make_attempt(number, outcome="failed", started_at=at(100 * number), finished=100 * number + 1)
        await store.retry_later(
            claimed.id, claimed.lease_token, due=at(100 * number + 50), error_message="E: x", attempt=attempt
        )
        recorded.append(attempt)
    (claimed,) = await claim(store, now=at(300))
    assert claimed.lease_token is not None
    last = make_attempt(3, outcome="lost", started_at=at(300), finished=301, worker_id="worker-9")
    await store.dead_letter(claimed.id, claimed.lease_token, error_message="E: y", attempt=last)
    recorded.append(last)
    assert await store.get_attempts(entry.id) == recorded


async def test_get_attempts_unknown_or_unattempted_is_empty(store: ScheduledCommandStore) -> None:
    """``get_attempts`` is an empty list for an unknown id and for an entry never attempted."""
    entry = make_entry()
    await store.add([entry])
    assert await store.get_attempts(entry.id) == []
    assert await store.get_attempts(str(uuid.uuid4())) == []


async def test_count_by_status_of_empty_store(store: ScheduledCommandStore) -> None:
    """An empty store counts zero in every status, each status present."""
    assert await store.count_by_status() == dict.fromkeys(ScheduledCommandStatus, 0)


async def test_count_by_status_follows_transitions(store: ScheduledCommandStore) -> None:
    """``count_by_status`` reflects every transition, with zeros for empty statuses."""
    for status, n in ((PENDING, 3), (PROCESSING, 2), (COMPLETED, 1), (FAILED, 2), (CANCELLED, 1)):
        for _ in range(n):
            await entry_in_status(store, status)
    assert await store.count_by_status() == {
        PENDING: 3,
        PROCESSING: 2,
        COMPLETED: 1,
        FAILED: 2,
        CANCELLED: 1,
        EXPIRED: 0,
        ScheduledCommandStatus.WAITING: 0,
    }


async def test_list_entries_filters(store: ScheduledCommandStore) -> None:
    """``list_entries`` returns the entries matching every filter given, in scheduling order."""
    a = make_entry(command_type="A", correlation_id="c-1")
    b = make_entry(command_type="B", correlation_id="c-1")
    c = make_entry(command_type="A", correlation_id="c-2")
    d = make_entry(command_type="A")
    await store.add([a, b, c, d])
    assert await store.cancel(c.id, now=at(1)) is not None

    async def ids(**filters: Any) -> list[str]:
        return [entry.id for entry in await store.list_entries(**filters)]

    assert await ids() == [a.id, b.id, c.id, d.id]
    assert await ids(status=PENDING) == [a.id, b.id, d.id]
    assert await ids(status=CANCELLED) == [c.id]
    assert await ids(status=FAILED) == []
    assert await ids(command_type="A") == [a.id, c.id, d.id]
    assert await ids(correlation_id="c-1") == [a.id, b.id]
    assert await ids(correlation_id="c-1", command_type="A") == [a.id]
    assert await ids(command_type="A", status=PENDING) == [a.id, d.id]
    assert await ids(correlation_id="c-2", status=PENDING) == []
    assert await ids(correlation_id="unknown") == []
    assert await store.list_entries(status=CANCELLED) == [await store.get(c.id)]


async def test_list_entries_accepts_an_unreadable_row_handler(store: ScheduledCommandStore) -> None:
    """Every store takes ``on_unreadable``; rows that convert are listed and never handed to it (rows that do not,
    possible only in a SQL store, are covered by tests/reliability/test_hostile_store_rows.py)."""
    entries = [make_entry() for _ in range(3)]
    await store.add(entries)
    unreadable: list[object] = []
    listed = await store.list_entries(on_unreadable=unreadable.append)
    assert [e.id for e in listed] == [e.id for e in entries]
    assert unreadable == []


async def test_list_entries_pages_are_complete_and_disjoint(store: ScheduledCommandStore) -> None:
    """Pages of ``limit``/``offset`` over 25 entries cover them all once, in scheduling order."""
    entries = [make_entry(priority=i % 4, scheduled_for=at(25 - i)) for i in range(25)]
    for start in range(0, 25, 5):
        await store.add(entries[start : start + 5])
    pages = [await store.list_entries(limit=10, offset=offset) for offset in (0, 10, 20, 30)]
    assert [len(page) for page in pages] == [10, 10, 5, 0]
    assert [e.id for page in pages for e in page] == [e.id for e in entries]
    assert [e.id for e in await store.list_entries(limit=50)] == [e.id for e in entries]
    assert len(await store.list_entries()) == 25


async def test_list_entries_newest_first(store: ScheduledCommandStore) -> None:
    """``newest_first`` lists in reverse scheduling order, paging included."""
    entries = [make_entry(command_type="A" if i % 2 else "B") for i in range(12)]
    for entry in entries:
        await store.add([entry])
    newest = [e.id for e in reversed(entries)]
    assert [e.id for e in await store.list_entries(newest_first=True)] == newest
    pages = [await store.list_entries(newest_first=True, limit=5, offset=o) for o in (0, 5, 10)]
    assert [e.id for page in pages for e in page] == newest
    only_a = [e.id for e in reversed(entries) if e.command_type == "A"]
    assert [e.id for e in await store.list_entries(command_type="A", newest_first=True)] == only_a


# -- next_due_at -----------------------------------------------------------------------------------------------


async def test_next_due_at_is_none_without_pending_entries(store: ScheduledCommandStore) -> None:
    """``next_due_at`` is None for an empty store and for a store holding only non-PENDING entries."""
    assert await store.next_due_at() is None
    for status in (PROCESSING, COMPLETED, FAILED, CANCELLED, EXPIRED):
        await entry_in_status(store, status)
    assert await store.next_due_at() is None


async def test_next_due_at_is_earliest_pending(store: ScheduledCommandStore) -> None:
    """``next_due_at`` is the earliest ``scheduled_for`` among PENDING entries, whatever their priority."""
    await store.add([make_entry(scheduled_for=at(40)), make_entry(scheduled_for=at(20), priority=-3)])
    await store.add([make_entry(scheduled_for=at(30), priority=9)])
    assert await store.next_due_at() == at(20)


async def test_next_due_at_ignores_claimed_and_finished(store: ScheduledCommandStore) -> None:
    """Claimed and finished entries no longer count for ``next_due_at``."""
    a, b, c = (
        make_entry(scheduled_for=at(1)),
        make_entry(scheduled_for=at(2), priority=5),
        make_entry(scheduled_for=at(3)),
    )
    await store.add([a, b, c])
    assert await claimed_ids(store, now=at(10), limit=1) == [b.id]
    assert await store.next_due_at() == at(1)
    assert await claimed_ids(store, now=at(10), limit=1) == [a.id]
    assert await store.next_due_at() == at(3)
    assert await claimed_ids(store, now=at(10)) == [c.id]
    assert await store.next_due_at() is None


async def test_next_due_at_reflects_cancel(store: ScheduledCommandStore) -> None:
    """Cancelling the earliest entry moves ``next_due_at`` to the next one."""
    early, late = make_entry(scheduled_for=at(5)), make_entry(scheduled_for=at(9))
    await store.add([early, late])
    await store.cancel(early.id, now=BASE)
    assert await store.next_due_at() == at(9)
    await store.cancel(late.id, now=BASE)
    assert await store.next_due_at() is None


async def test_next_due_at_reflects_retry_later(store: ScheduledCommandStore) -> None:
    """A retried entry counts for ``next_due_at`` at its new due time."""
    other = make_entry(scheduled_for=at(50))
    await store.add([other])
    claimed = await add_and_claim(store)
    assert claimed.lease_token is not None
    assert await store.next_due_at() == at(50)
    await store.retry_later(
        claimed.id, claimed.lease_token, due=at(20), error_message="E: x", attempt=make_attempt(outcome="failed")
    )
    assert await store.next_due_at() == at(20)


async def test_next_due_at_reflects_release_and_requeue(store: ScheduledCommandStore) -> None:
    """Released and requeued entries count for ``next_due_at`` again."""
    released = await add_and_claim(store, scheduled_for=at(4))
    assert released.lease_token is not None
    assert await store.next_due_at() is None
    assert await store.release(released.id, released.lease_token)
    assert await store.next_due_at() == at(4)
    failed_id = await entry_in_status(store, FAILED, scheduled_for=at(-100))
    assert await store.requeue(failed_id, now=at(2))
    assert await store.next_due_at() == at(2)


# -- purge -----------------------------------------------------------------------------------------------------


async def test_purge_deletes_only_terminal_entries_finished_before(store: ScheduledCommandStore) -> None:
    """purge deletes terminal entries finished before ``older_than`` (and their attempts) and returns the count."""
    old = [await entry_in_status(store, status) for status in (COMPLETED, FAILED, CANCELLED, EXPIRED)]
    pending_id = await entry_in_status(store, PENDING, scheduled_for=at(-1000))
    processing_id = await entry_in_status(store, PROCESSING, scheduled_for=at(-1000))
    recent = await add_and_claim(store, scheduled_for=at(1))
    assert recent.lease_token is not None
    await store.complete(recent.id, recent.lease_token, result_payload=None, attempt=make_attempt(finished=50))

    assert await store.purge(older_than=at(10)) == 4

    for entry_id in old:
        assert await store.get(entry_id) is None
        assert await store.get_attempts(entry_id) == []
    assert await store.get(pending_id) is not None
    assert await store.get(processing_id) is not None
    assert await store.get(recent.id) is not None
    assert len(await store.get_attempts(recent.id)) == 1
    assert await store.count_by_status() == {
        PENDING: 1,
        PROCESSING: 1,
        COMPLETED: 1,
        FAILED: 0,
        CANCELLED: 0,
        EXPIRED: 0,
        ScheduledCommandStatus.WAITING: 0,
    }
    assert await store.purge(older_than=at(10)) == 0


async def test_purge_is_strictly_before_older_than(store: ScheduledCommandStore) -> None:
    """An entry finished exactly at ``older_than`` is kept."""
    entry_id = await entry_in_status(store, CANCELLED)  # completed_at = BASE + 1s
    assert await store.purge(older_than=at(1)) == 0
    assert await store.get(entry_id) is not None
    assert await store.purge(older_than=at(2)) == 1


async def test_purge_only_given_statuses(store: ScheduledCommandStore) -> None:
    """purge deletes only the statuses asked for."""
    ids = {status: await entry_in_status(store, status) for status in TERMINAL_STATUSES}
    assert await store.purge(older_than=at(100), statuses=[CANCELLED, EXPIRED]) == 2
    for status, entry_id in ids.items():
        assert (await store.get(entry_id) is None) == (status in {CANCELLED, EXPIRED})


async def test_purge_never_deletes_pending_or_processing(store: ScheduledCommandStore) -> None:
    """PENDING and PROCESSING entries survive purge even when their statuses are asked for."""
    pending_id = await entry_in_status(store, PENDING, scheduled_for=at(-1000), created_at=at(-1000))
    processing_id = await entry_in_status(store, PROCESSING, scheduled_for=at(-1000), created_at=at(-1000))
    completed_id = await entry_in_status(store, COMPLETED)
    purged = await store.purge(older_than=at(10_000), statuses=list(ScheduledCommandStatus))
    assert purged == 1
    assert await store.get(pending_id) is not None
    assert await store.get(processing_id) is not None
    assert await store.get(completed_id) is None


async def test_purged_id_can_be_scheduled_afresh(store: ScheduledCommandStore) -> None:
    """An id freed by purge can be added again and behaves as a new entry (due at its new time)."""
    first = make_entry(scheduled_for=at(100))
    await store.add([first])
    await store.cancel(first.id, now=at(1))
    assert await store.purge(older_than=at(10)) == 1
    again = make_entry(id=first.id, scheduled_for=at(200))
    assert await store.add([again]) == [first.id]
    assert await claim(store, now=at(150)) == []
    assert await store.next_due_at() == at(200)
    assert await claimed_ids(store, now=at(200)) == [first.id]


# -- wake-ups --------------------------------------------------------------------------------------------------


async def test_wakeup_on_add_with_earliest_due(store: ScheduledCommandStore) -> None:
    """Adding entries calls each listener with the earliest due time added."""
    calls: list[datetime] = []
    other: list[datetime] = []
    store.add_wakeup_listener(calls.append)
    store.add_wakeup_listener(other.append)
    await store.add(
        [make_entry(scheduled_for=at(30)), make_entry(scheduled_for=at(10)), make_entry(scheduled_for=at(20))]
    )
    await eventually(lambda: bool(calls) and bool(other))
    assert set(calls) == {at(10)}
    assert set(other) == {at(10)}


async def test_wakeup_on_requeue(store: ScheduledCommandStore) -> None:
    """requeue calls listeners with its ``now``, the new due time."""
    failed_id = await entry_in_status(store, FAILED)
    calls: list[datetime] = []
    store.add_wakeup_listener(calls.append)
    assert await store.requeue(failed_id, now=at(77))
    await eventually(lambda: bool(calls))
    assert set(calls) == {at(77)}


async def test_wakeup_on_release(store: ScheduledCommandStore) -> None:
    """release calls listeners with the entry's (unchanged) due time."""
    claimed = await add_and_claim(store, scheduled_for=at(8))
    assert claimed.lease_token is not None
    calls: list[datetime] = []
    store.add_wakeup_listener(calls.append)
    assert await store.release(claimed.id, claimed.lease_token)
    await eventually(lambda: bool(calls))
    assert set(calls) == {at(8)}


async def test_removed_wakeup_listener_is_not_called(store: ScheduledCommandStore) -> None:
    """After ``remove_wakeup_listener`` the listener is not called again; removing twice is harmless."""
    removed: list[datetime] = []
    kept: list[datetime] = []
    store.add_wakeup_listener(removed.append)
    store.add_wakeup_listener(kept.append)
    store.remove_wakeup_listener(removed.append)
    store.remove_wakeup_listener(removed.append)
    await store.add([make_entry(scheduled_for=at(5))])
    await eventually(lambda: bool(kept))
    await asyncio.sleep(0)
    assert removed == []
    assert set(kept) == {at(5)}
