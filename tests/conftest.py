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
