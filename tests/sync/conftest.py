"""Fixtures for the synchronous scheduler: a ``sql_url`` for SQLite (a file) and PostgreSQL, and the same URL for a
blocking SQLAlchemy engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url


def empty_postgres(url: str) -> None:
    """Delete every entry, attempt and schedule of the run's PostgreSQL database (shared by its tests)."""
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for table in ("scheduled_commands", "scheduled_command_attempts", "recurring_schedules"):
            exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
            if exists and exists[0]:
                conn.execute(f"TRUNCATE {table} RESTART IDENTITY")


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a fresh SQLite file, or the run's PostgreSQL database emptied."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'scheduled.db'}"
        return
    url: str = request.getfixturevalue("postgres_url")
    empty_postgres(url)
    yield url


def blocking_url(url: str) -> str:
    """``url`` for SQLAlchemy's blocking engine (sqlite3, psycopg 3)."""
    parsed = make_url(url)
    driver = "sqlite" if parsed.get_backend_name() == "sqlite" else "postgresql+psycopg"
    return parsed.set(drivername=driver).render_as_string(hide_password=False)
