"""What only the SQL stores (SQLite, PostgreSQL) do, beyond the shipped suites: the search plans and deep pages of
``stores.sql`` give the same rows as the plain ones, and the SQL predicate of failing attempts names the outcomes
``stores.outcomes`` does."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from stores import ScheduledCommandStore
from stores.filters import EntryFilter
from stores.outcomes import FAILING_ATTEMPTS
from stores.sql import _queries, _search
from stores.sql._tables import FAILING_ATTEMPTS_SQL
from stores.testing._helpers import BASE, make_entry
from stores.testing._search import search_entries

#: The SQL stores of ``conftest.STORE_FACTORIES``.
on_sql = pytest.mark.parametrize("store_factory", ["sqlite", "postgresql"], indirect=True)


@on_sql
async def test_a_dense_search_lists_the_same_as_a_sparse_one(
    store: ScheduledCommandStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQL stores list a search matching many rows by walking ``seq`` and one matching few by sorting its matches
    (``stores.sql._search.SearchPlans``); both give the same pages (here with the threshold lowered to 1), and a
    deep page (found by its keys first) the same rows as a shallow one."""
    await store.add(search_entries())
    where = EntryFilter(id_prefix="ab")
    sparse = [await store.list_entries(where=where, newest_first=True, limit=2, offset=o) for o in (0, 2)]
    monkeypatch.setattr(_search, "SPARSE_LIMIT", 1)
    monkeypatch.setattr(_search.SearchPlans, "MEMORY_SECONDS", -1.0)
    dense = [await store.list_entries(where=where, newest_first=True, limit=2, offset=o) for o in (0, 2)]
    assert dense == sparse and [len(page) for page in sparse] == [2, 1]
    monkeypatch.setattr(_queries, "DEEP_OFFSET", 1)
    assert await store.list_entries(where=where, newest_first=True, limit=2, offset=2) == sparse[1]
    assert await store.list_entries(limit=3, offset=3) == (await store.list_entries())[3:]


@on_sql
async def test_a_deep_page_of_a_created_range_is_the_shallow_one(
    store: ScheduledCommandStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A created range lists in creation order (the shipped ``test_a_created_range_lists_by_creation_time``); a page
    found by its keys first (past ``DEEP_OFFSET``) gives the same rows."""
    minutes = (3, 1, 2, 2)  # scheduled in this order, created at these minutes
    for minute in minutes:  # one by one: scheduling order is the order of the list
        await store.add([make_entry(created_at=BASE + timedelta(minutes=minute))])
    where = EntryFilter(created_after=BASE, created_before=BASE + timedelta(hours=1))
    newest = [e.id for e in await store.list_entries(where=where, newest_first=True)]
    monkeypatch.setattr(_queries, "DEEP_OFFSET", 1)
    deep = await store.list_entries(where=where, newest_first=True, limit=2, offset=2)
    assert [e.id for e in deep] == newest[2:]


def test_the_sql_predicate_of_failing_attempts_names_the_same_outcomes() -> None:
    """The partial index of failing attempts and the retried count use one SQL predicate; it names exactly the
    attempt outcomes after which an entry is retried."""
    assert set(re.findall(r"'(\w+)'", FAILING_ATTEMPTS_SQL)) == FAILING_ATTEMPTS
