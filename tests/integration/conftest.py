"""Fixtures for integration tests on real databases: a ``sql_url`` for SQLite (a file) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url


def _truncate(url: str) -> None:
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('scheduled_commands') IS NOT NULL").fetchone()
        if exists and exists[0]:
            conn.execute("TRUNCATE scheduled_commands, scheduled_command_attempts RESTART IDENTITY")
        exists = conn.execute("SELECT to_regclass('recurring_schedules') IS NOT NULL").fetchone()
        if exists and exists[0]:
            conn.execute("TRUNCATE recurring_schedules")
        exists = conn.execute("SELECT to_regclass('scheduled_queues') IS NOT NULL").fetchone()
        if exists and exists[0]:
            conn.execute("TRUNCATE scheduled_queues")
        exists = conn.execute("SELECT to_regclass('scheduled_queue_starts') IS NOT NULL").fetchone()
        if exists and exists[0]:  # a rate limited queue's starts outlive its limits: the next test starts afresh
            conn.execute("TRUNCATE scheduled_queue_starts")


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: a fresh SQLite file, or the run's PostgreSQL database emptied."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'scheduled.db'}"
        return
    url: str = request.getfixturevalue("postgres_url")
    _truncate(url)
    yield url
