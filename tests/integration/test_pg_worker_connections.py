"""The worker's own PostgreSQL connections (``stores/sql/_pg_worker.py``): a connection checked out when the store
closes is closed when its statement ends, not pooled again; one cancelled mid-statement is never reused."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.engine import make_url

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
