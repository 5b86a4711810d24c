"""Helpers of the synchronous scheduler's tests (tests/sync): the blocking URL of a store URL, and emptying the run's
shared PostgreSQL database."""

from __future__ import annotations

from empty_postgres import empty_postgres
from sqlalchemy.engine import make_url

__all__ = ["blocking_url", "empty_postgres"]


def blocking_url(url: str) -> str:
    """``url`` for SQLAlchemy's blocking engine (sqlite3, psycopg 3)."""
    parsed = make_url(url)
    driver = "sqlite" if parsed.get_backend_name() == "sqlite" else "postgresql+psycopg"
    return parsed.set(drivername=driver).render_as_string(hide_password=False)
