"""Fixtures of the reliability tests: databases of their own, and the ``soak`` marker.

Tests marked ``soak`` are the long variants; they run only when asked for, with ``-m soak`` or
``CQRS_SCHEDULING_SOAK=1``, so the default run of this directory stays within a few minutes.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from reliability_support import fresh_postgres_database, open_store

from stores import ScheduledCommandStore


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "soak" in (config.getoption("markexpr") or "") or os.environ.get("CQRS_SCHEDULING_SOAK") == "1":
        return
    skip = pytest.mark.skip(reason="soak variant: run with -m soak or CQRS_SCHEDULING_SOAK=1")
    for item in items:
        if item.get_closest_marker("soak") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def module_postgres_url(postgres_url: str) -> Iterator[str]:
    """A database of this test module's own (tests here empty it freely), dropped after the module."""
    with fresh_postgres_database(postgres_url, "mod") as url:
        yield url


@pytest.fixture(params=["memory", "sqlite", "postgresql", "redis"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ScheduledCommandStore]:
    """An opened, empty store of each kind (PostgreSQL: the module's database, emptied; Redis: a key prefix of the
    test's own), closed afterwards."""
    store = await open_store(request.param, tmp_path, request)
    try:
        yield store
    finally:
        await store.close()
