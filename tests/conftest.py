"""Fixtures shared by every test layer: PostgreSQL databases of the run's own, and throwaway PostgreSQL servers.

The shared server is read from ``CQRS_SCHEDULING_TEST_POSTGRES_URL`` (default: the local ``test`` database). Each run
creates its own database, so parallel or repeated runs cannot collide, and drops it at the end; a test that wants a
database to itself asks ``new_postgres_database``, which drops what it created. No test restarts, stops or
reconfigures the shared server: a test that must do that to a server asks ``throwaway_postgres`` for one of its own
(see tests/support/postgres_servers.py). When ``CI`` is set an unreachable server or missing server binaries fail
the tests that need them; elsewhere they are skipped, and the skip says why.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator

import pytest
from postgres_servers import (
    PostgresUnavailableError,
    ThrowawayPostgres,
    find_postgres_bin,
    postgres_database,
    postmaster_start_time,
    throwaway_postgres,
)
from sqlalchemy.engine import make_url

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _admin_conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of a fresh database on the test PostgreSQL server, dropped after the run.

    At the end of the run it also checks that the tests left the server as they found it: not restarted (same
    ``pg_postmaster_start_time()``), and no database of this run (its names carry the process id) left behind.
    """
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
    started = postmaster_start_time(base)
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_admin_conninfo(base), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            left = admin.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s ORDER BY datname",
                (f"cqrs\\_%\\_{os.getpid()}\\_%",),
            ).fetchall()
        assert postmaster_start_time(base) == started, "a test restarted the shared PostgreSQL server"
        assert not left, f"tests left these databases on the shared server: {', '.join(row[0] for row in left)}"


@pytest.fixture
def new_postgres_database() -> Iterator[Callable[[str, str], str]]:
    """``create(base_url, hint)``: the URL of a new database on the server of ``base_url``; every database it
    created is dropped after the test, also when the test fails."""
    with contextlib.ExitStack() as created:

        def create(base_url: str, hint: str) -> str:
            return created.enter_context(postgres_database(base_url, hint))

        yield create


@pytest.fixture(name="throwaway_postgres")
def throwaway_postgres_fixture() -> Iterator[ThrowawayPostgres]:
    """A PostgreSQL server of the test's own, which it may stop and restart; removed after the test."""
    try:
        find_postgres_bin()
    except PostgresUnavailableError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (CI is set: tests that restart PostgreSQL must run)")
        pytest.skip(str(exc))
    with throwaway_postgres() as server:
        yield server


DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

#: Every Redis key a test run writes starts with this prefix (its own, so runs never meet); removed after each test.
REDIS_RUN_PREFIX = f"cqrs-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of the test Redis server (``CQRS_SCHEDULING_TEST_REDIS_URL``, default the local one).

    Tests use only keys under ``REDIS_RUN_PREFIX`` there and delete them: the server is shared, so never FLUSHDB.
    """
    import redis

    url = os.environ.get("CQRS_SCHEDULING_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        reason = f"Redis at {url} is unreachable: {exc}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: Redis tests must run)")
        pytest.skip(reason)
    finally:
        client.close()
    try:
        yield url
    finally:  # whatever a test left behind (a store it reopened after its prefix was emptied, say)
        delete_redis_keys(url, f"{REDIS_RUN_PREFIX}:")


def delete_redis_keys(url: str, prefix: str) -> int:
    """Delete every key starting with ``prefix`` (SCAN, never FLUSHDB); how many were deleted."""
    import redis

    deleted = 0
    with redis.Redis.from_url(url) as client:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += client.unlink(*batch)
    return deleted


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own on the test Redis server; its keys are deleted afterwards."""
    prefix = f"{REDIS_RUN_PREFIX}:{uuid.uuid4().hex[:10]}"
    try:
        yield prefix
    finally:
        delete_redis_keys(redis_url, f"{prefix}:")
