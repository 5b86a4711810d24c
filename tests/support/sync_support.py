"""Helpers of the synchronous scheduler's tests (tests/sync): the blocking URL of a store URL, and emptying the run's
shared PostgreSQL database."""

from __future__ import annotations

import psycopg
from sqlalchemy.engine import make_url


def empty_postgres(url: str) -> None:
    """Delete every entry, attempt and schedule of the run's PostgreSQL database (shared by its tests)."""
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for table in ("scheduled_commands", "scheduled_command_attempts", "recurring_schedules"):
            exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
            if exists and exists[0]:
                conn.execute(f"TRUNCATE {table} RESTART IDENTITY")


def blocking_url(url: str) -> str:
    """``url`` for SQLAlchemy's blocking engine (sqlite3, psycopg 3)."""
    parsed = make_url(url)
    driver = "sqlite" if parsed.get_backend_name() == "sqlite" else "postgresql+psycopg"
    return parsed.set(drivername=driver).render_as_string(hide_password=False)
