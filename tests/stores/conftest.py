"""Fixtures of the store contract suite: one ``store`` fixture, parametrized over every store implementation.

A new store joins the suite by adding one factory to ``STORE_FACTORIES``. A factory gets a fresh, empty directory
it may keep files in (an SQLite database, for example) and returns an unopened store; the fixtures open it with
``async with`` and close it after the test.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import ClassVar

import pytest
from empty_postgres import empty_postgres_async

from stores import MemoryStore, RedisStore, ScheduledCommandStore
from stores.sql import SqlStore

#: Builds an unopened, empty store that may keep its files in the given (fresh, empty) directory.
StoreFactory = Callable[[Path], ScheduledCommandStore]


def _memory_store(directory: Path) -> ScheduledCommandStore:
    return MemoryStore()


def _sqlite_store(directory: Path) -> ScheduledCommandStore:
    return SqlStore(f"sqlite:///{directory / 'store.db'}")


def _sqlite_engine_only_store(directory: Path) -> ScheduledCommandStore:
    # A URL with options: every statement goes through the engine's connections, none through the connections of
    # the backend's own thread that a plain file's worker writes use (claims, outcome batches, ``schedule()``).
    return SqlStore(f"sqlite:///{directory / 'store.db'}?timeout=30")


class _EmptiedSqlStore(SqlStore):
    """A SqlStore on the run's shared PostgreSQL database, emptied when the first store of a test (of its directory,
    as a SQLite file is new per directory) is opened, so every test starts clean; only then: a service or a second
    store object opening the database again must find what the test wrote."""

    #: The test directories whose database was emptied.
    _emptied_for: ClassVar[set[Path]] = set()

    def __init__(self, url: str, directory: Path) -> None:
        super().__init__(url)
        self._directory = directory

    async def open(self) -> None:
        await super().open()
        if self._directory in self._emptied_for:
            return
        self._emptied_for.add(self._directory)
        async with self.engine.begin() as conn:
            await empty_postgres_async(conn)


def _redis_store(directory: Path) -> ScheduledCommandStore:
    # One key prefix per directory: stores made for one directory share their data, like SQLite files do.
    return RedisStore(_REDIS[0], prefix=f"{_REDIS[1]}:{hashlib.sha1(str(directory).encode()).hexdigest()[:12]}")


#: Every store the contract suite runs against, by test id. ``postgresql`` gets its URL from the run's database;
#: ``redis`` uses keys under a prefix of the test's own on the test server, deleted after the test.
STORE_FACTORIES: dict[str, StoreFactory] = {
    "memory": _memory_store,
    "sqlite": _sqlite_store,
    "sqlite-engine-only": _sqlite_engine_only_store,
    "postgresql": lambda directory: _EmptiedSqlStore(_POSTGRES_URL[0], directory),
    "redis": _redis_store,
}

_POSTGRES_URL: list[str] = []
_REDIS: list[str] = []  # [url, the current test's key prefix]


@pytest.fixture(params=list(STORE_FACTORIES))
def store_factory(request: pytest.FixtureRequest) -> StoreFactory:
    """The factory of the store under test (for tests that need several fresh stores, such as property tests)."""
    if request.param == "postgresql" and not _POSTGRES_URL:
        _POSTGRES_URL.append(request.getfixturevalue("postgres_url"))
    if request.param == "redis":
        _REDIS[:] = [request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")]
    factory: StoreFactory = STORE_FACTORIES[request.param]
    return factory


@pytest.fixture
async def store(store_factory: StoreFactory, tmp_path: Path) -> AsyncIterator[ScheduledCommandStore]:
    """A fresh, empty, opened store; closed after the test."""
    async with store_factory(tmp_path) as opened:
        yield opened
