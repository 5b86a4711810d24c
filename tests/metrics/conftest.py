"""Fixtures for the metrics tests: a private Prometheus registry per test, its counters by command type, and stores
to observe."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from empty_postgres import empty_postgres_async
from prometheus_client import CollectorRegistry

from stores import MemoryStore, ScheduledCommandStore, SqlStore


@pytest.fixture
def registry() -> CollectorRegistry:
    """A registry of the test's own, so counters start at zero and tests cannot see each other's series."""
    return CollectorRegistry()


@pytest.fixture
def counts(registry: CollectorRegistry) -> Callable[[str], dict[str, float]]:
    """``counts(event)``: every command type's value of ``cqrs_scheduling_commands_{event}_total`` in ``registry``."""

    def values(event: str) -> dict[str, float]:
        return {
            sample.labels["command_type"]: sample.value
            for family in registry.collect()
            for sample in family.samples
            if sample.name == f"cqrs_scheduling_commands_{event}_total"
        }

    return values


async def _opened(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> ScheduledCommandStore:
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        return SqlStore(f"sqlite:///{tmp_path / 'metrics.db'}")
    store = SqlStore(request.getfixturevalue("postgres_url"))
    await store.open()
    async with store.engine.begin() as conn:  # the run's database is shared by the tests: start empty
        await empty_postgres_async(conn)
    return store


@pytest.fixture(params=["memory", "sqlite"])
async def run_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ScheduledCommandStore]:
    """A store a service runs on: MemoryStore, or a SQLite file."""
    async with await _opened(request.param, tmp_path, request) as store:
        yield store


@pytest.fixture(params=["sqlite", "postgresql"])
async def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ScheduledCommandStore]:
    """A SQL store: a fresh SQLite file, or the run's PostgreSQL database emptied."""
    async with await _opened(request.param, tmp_path, request) as store:
        yield store


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ScheduledCommandStore]:
    """Every store: MemoryStore, a fresh SQLite file, or the run's PostgreSQL database emptied."""
    async with await _opened(request.param, tmp_path, request) as store:
        yield store
