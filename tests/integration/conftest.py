"""Fixtures for integration tests on real databases: a ``sql_url`` for SQLite (a file) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from empty_postgres import empty_postgres


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a fresh SQLite file, or the run's PostgreSQL database emptied."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'scheduled.db'}"
        return
    url: str = request.getfixturevalue("postgres_url")
    empty_postgres(url)
    yield url
