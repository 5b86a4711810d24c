"""The entries search (``EntryFilter``) and the bounded count: the same answers as ``EntryFilter.matches``; a store
that declares it cannot search (``supports_search`` False, as RedisStore: no index answers a search) refuses the
searches, saying so. ``SearchContract``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from stores.base import ScheduledCommandStore
from stores.entries import ScheduledCommandStatus
from stores.errors import UnsupportedFeatureError
from stores.filters import EntryFilter

from ._helpers import BASE, at, make_entry

PENDING, FAILED, COMPLETED = (
    ScheduledCommandStatus.PENDING,
    ScheduledCommandStatus.FAILED,
    ScheduledCommandStatus.COMPLETED,
)


def search_entries() -> list[Any]:
    """Six entries: created a minute apart, due and finished at known times, some with errors."""
    made = []
    for i in range(6):
        finished = i in (1, 2, 4)
        made.append(
            make_entry(
                id=f"{'ab' if i < 3 else 'cd'}{i:02d}0000-0000-4000-8000-00000000000{i}",
                command_type="A" if i % 2 else "B",
                correlation_id="order-1" if i < 2 else None,
                status=(FAILED if i in (1, 4) else COMPLETED) if finished else PENDING,
                created_at=BASE + timedelta(minutes=i),
                scheduled_for=BASE + timedelta(hours=i),
                completed_at=at(3600 * i + 5) if finished else None,
                error_message={1: "TimeoutError: upstream 50% slow", 2: "ValueError: bad", 4: "timeout_error"}.get(i),
            )
        )
    return made


FILTERS: dict[str, dict[str, Any]] = {
    "everything": {},
    "id prefix": {"id_prefix": "ab"},
    "one id": {"id_prefix": "cd040000"},
    "error text ignoring case": {"error_contains": "TIMEOUT"},
    "percent is literal": {"error_contains": "50%"},
    "underscore is literal": {"error_contains": "t_e"},
    "created range": {"created_after": BASE + timedelta(minutes=1), "created_before": BASE + timedelta(minutes=3)},
    "due from": {"due_after": BASE + timedelta(hours=4)},
    "finished before": {"finished_before": at(3600 * 3)},
    "finished range and type": {"finished_after": at(0), "command_type": "A"},
    "status and error": {"status": FAILED, "error_contains": "time"},
    "correlation and prefix": {"correlation_id": "order-1", "id_prefix": "ab01"},
    "nothing": {"id_prefix": "zz"},
}


@pytest.mark.parametrize("fields", list(FILTERS.values()), ids=list(FILTERS))
async def test_list_and_count_answer_like_the_filter(store: ScheduledCommandStore, fields: dict[str, Any]) -> None:
    """``list_entries(where=...)`` lists (in both orders) and ``count_entries`` counts what ``matches`` says."""
    entries = search_entries()
    await store.add(entries)
    where = EntryFilter(**fields)
    if where.searches and not store.supports_search:
        with pytest.raises(UnsupportedFeatureError, match="does not support searching"):
            await store.list_entries(where=where)
        return
    stored = [await store.get(entry.id) for entry in entries]
    expected = [entry.id for entry in stored if entry is not None and where.matches(entry)]
    assert [e.id for e in await store.list_entries(where=where)] == expected
    assert [e.id for e in await store.list_entries(where=where, newest_first=True)] == expected[::-1]
    assert await store.count_entries(where) == len(expected)


async def test_the_bounded_count_stops_past_its_limit(store: ScheduledCommandStore) -> None:
    """``at_most=n`` answers the count when it is at most n, else n + 1 ("more than n")."""
    await store.add([make_entry(command_type="A") for _ in range(5)])
    where = EntryFilter(command_type="A")
    assert [await store.count_entries(where, at_most=n) for n in (0, 2, 4, 5, 10)] == [1, 3, 5, 5, 5]
    assert await store.count_entries(at_most=3) == 4
    with pytest.raises(ValueError, match="-1"):
        await store.count_entries(at_most=-1)


async def test_arguments_and_filter_combine(store: ScheduledCommandStore) -> None:
    """The filter arguments of ``list_entries`` and ``where`` must both hold; a contradiction is a clear error."""
    await store.add(search_entries())
    everything = await store.list_entries()
    listed = await store.list_entries(status=PENDING, where=EntryFilter(command_type="B"))
    assert listed == [e for e in everything if e.status is PENDING and e.command_type == "B"]
    assert listed  # (a store may add every entry PENDING: then all three of type B)
    with pytest.raises(ValueError, match="contradicts the filter"):
        await store.list_entries(status=FAILED, where=EntryFilter(status=PENDING))


async def test_a_created_range_lists_by_creation_time(store: ScheduledCommandStore) -> None:
    """With a created range the listing is in creation order, then scheduling order (``EntryFilter.by_creation``),
    so that SQL reads a range's newest rows through its index."""
    minutes = (3, 1, 2, 2)  # scheduled in this order, created at these minutes
    entries = [make_entry(created_at=BASE + timedelta(minutes=m)) for m in minutes]
    for entry in entries:  # one by one: scheduling order is the order of the list
        await store.add([entry])
    where = EntryFilter(created_after=BASE, created_before=BASE + timedelta(hours=1))
    if not store.supports_search:
        with pytest.raises(UnsupportedFeatureError, match="does not support searching"):
            await store.list_entries(where=where)
        return
    by_creation = [entries[i].id for i in (1, 2, 3, 0)]
    assert [e.id for e in await store.list_entries(where=where)] == by_creation
    newest = [e.id for e in await store.list_entries(where=where, newest_first=True)]
    assert newest == by_creation[::-1]
    assert [e.id for e in await store.list_entries(newest_first=True)] == [e.id for e in entries[::-1]]
    assert [e.id for e in await store.list_entries(where=where, newest_first=True, limit=2, offset=2)] == newest[2:]
