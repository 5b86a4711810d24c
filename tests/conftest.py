"""Fixtures shared by every test layer: a private PostgreSQL database per test run.

The server is read from ``CQRS_SCHEDULING_TEST_POSTGRES_URL`` (default: the local ``test`` database). Each run creates
its own database, so parallel or repeated runs cannot collide, and drops it at the end. When ``CI`` is set an
unreachable server fails the tests that need it; elsewhere they are skipped, and the skip says why.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _admin_conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of a fresh database on the test PostgreSQL server, dropped after the run."""
    import psycopg

    base = os.environ.get("CQRS_SCHEDULING_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    name = f"cqrs_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(_admin_conninfo(base), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL at {make_url(base).render_as_string(hide_password=True)} is unreachable: {exc}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: PostgreSQL tests must run)")
        pytest.skip(reason)
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_admin_conninfo(base), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
