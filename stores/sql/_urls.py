"""Store URLs: which driver a user's URL maps to, how it is shown (password masked), and whether two name one
database."""

from __future__ import annotations

import os

from sqlalchemy.engine import URL, make_url

__all__ = ["mask_url", "same_database", "to_async_url"]


def to_async_url(url: str) -> URL:
    """Map a user's URL to the async driver: ``sqlite:///f.db`` -> aiosqlite, ``postgresql://`` -> psycopg 3.

    Raises:
        ValueError: an unsupported scheme, or an in-memory SQLite database (use ``MemoryStore``).
    """
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ValueError(f"not a store URL: {url!r} (expected sqlite:///path or postgresql+psycopg://...)") from exc
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite":
        if driver not in ("", "aiosqlite", "pysqlite"):
            raise ValueError(f"unsupported SQLite driver {driver!r} in {mask_url(url)}; use sqlite:///path")
        if parsed.host:  # sqlite://file.db: the start of the path was read as a host name
            raise ValueError(
                f"{mask_url(url)} names no file (the path follows three slashes): did you mean "
                f"sqlite:///{parsed.host}{'/' + parsed.database if parsed.database else ''}?"
            )
        if parsed.database in (None, "", ":memory:"):
            raise ValueError(f"{mask_url(url)} is an in-memory SQLite database; use MemoryStore, or a file path")
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "psycopg", "psycopg_async"):
            raise ValueError(f"unsupported PostgreSQL driver {driver!r} in {mask_url(url)}; use postgresql+psycopg://")
        return parsed.set(drivername="postgresql+psycopg")
    raise ValueError(
        f"unsupported store URL scheme {parsed.drivername!r} in {mask_url(url)}; "
        "supported: sqlite:///path/to/file.db, postgresql+psycopg://user@host:5432/db"
    )


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by ``***``, for logs and errors."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except Exception:  # noqa: BLE001 - not a URL at all: show nothing secret
        return "<invalid URL>"
    return parsed.render_as_string(hide_password=True)


def same_database(a: URL, b: URL) -> bool:
    """Whether two URLs name one database (the driver may differ: a sync session on the store's async URL)."""
    if a.get_backend_name() != b.get_backend_name():
        return False
    if a.get_backend_name() == "sqlite":
        return os.path.realpath(a.database or "") == os.path.realpath(b.database or "")
    return (a.host or "localhost", a.port or 5432, a.database) == (b.host or "localhost", b.port or 5432, b.database)
