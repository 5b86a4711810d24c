"""The worker's own PostgreSQL connections (``stores/sql/_pg_worker.py``): a connection checked out when the store
closes is closed when its statement ends, not pooled again; one cancelled mid-statement is never reused; one past its
age is replaced."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.engine import make_url

from stores.sql import _pg_worker
from stores.sql._pg_worker import NativeStatement, PgWorker


async def test_a_statement_running_at_close_returns_its_connection_closed(postgres_url: str) -> None:
    worker = PgWorker(make_url(postgres_url))
    [row] = await worker.fetch(NativeStatement.of("SELECT 1 AS one"), {})
    assert row["one"] == 1
    [pooled] = worker._idle
    running = asyncio.create_task(worker.fetch(NativeStatement.of("SELECT 3 AS three FROM pg_sleep(0.3)"), {}))
    await asyncio.sleep(0.1)  # the statement is running on the pooled connection
    assert worker._idle == []
    await worker.close()
    [row] = await running
    assert row["three"] == 3  # the statement itself completed
    assert worker._idle == [] and pooled.closed  # closed on its way back, not pooled after close
    [row] = await worker.fetch(NativeStatement.of("SELECT 2 AS two"), {})  # a worker used again connects afresh
    assert row["two"] == 2
    await worker.close()


async def test_a_cancelled_statement_does_not_leave_its_connection_in_the_pool(postgres_url: str) -> None:
    worker = PgWorker(make_url(postgres_url))
    await worker.fetch(NativeStatement.of("SELECT 1"), {})
    [conn] = worker._idle
    task = asyncio.create_task(worker.fetch(NativeStatement.of("SELECT pg_sleep(5)"), {}))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert worker._idle == [] and conn.closed
    await worker.close()


async def test_a_connection_past_its_age_is_closed_on_return_and_replaced(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection older than ``MAX_CONNECTION_AGE_S`` is not pooled again: the next statement runs on a new one
    (a new server process), whose plan mode follows the table's statistics of that moment."""
    worker = PgWorker(make_url(postgres_url))
    pid = NativeStatement.of("SELECT pg_backend_pid() AS pid")
    [first] = await worker.fetch(pid, {})
    [same] = await worker.fetch(pid, {})
    assert same["pid"] == first["pid"]  # young: pooled and reused
    [conn] = worker._idle
    monkeypatch.setattr(_pg_worker, "MAX_CONNECTION_AGE_S", 0.0)
    [last] = await worker.fetch(pid, {})
    assert last["pid"] == first["pid"] and conn.closed and worker._idle == []
    [fresh] = await worker.fetch(pid, {})
    assert fresh["pid"] != first["pid"]
    await worker.close()
