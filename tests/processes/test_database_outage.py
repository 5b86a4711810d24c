"""The database goes away mid-run: workers log, back off, reconnect and finish; nothing is lost or run twice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url
from test_multiworker import (
    executions,
    schedule_jobs,
    start_worker,
    stop,
    wait_until_completed,
)

from scheduling import ScheduledCommandStatus

# Fleets of worker processes under load, timed by their own clocks: the Makefile's --dist loadgroup runs the tests of
# this group one after another, so two fleets never share the two cores (a starved fleet misses its rates and leases).
pytestmark = pytest.mark.xdist_group("worker-fleets")


def terminate_backends(store_url: str) -> int:
    """Kill every connection to the store's database, as a restart or a failover would."""
    url = make_url(store_url)
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (url.database,),
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.timeout(240)
def test_workers_survive_connections_being_killed_mid_drain(
    tmp_path: Path, postgres_url: str, new_postgres_database: Callable[[str, str], str]
) -> None:
    """Every connection is terminated three times during a drain; all commands complete exactly once."""
    store_url = new_postgres_database(postgres_url, "outage")
    count = 3_000
    asyncio.run(schedule_jobs(store_url, count, seconds=0.002))
    outputs = [tmp_path / f"worker-{i}.out" for i in range(2)]
    workers = [start_worker(store_url, out) for out in outputs]
    killed = []
    try:
        # Each worker serving before the first kill: a worker still opening the store when its database goes away
        # fails fast and exits (by design, docs/troubleshooting.md), which on a loaded machine the second one did.
        deadline = time.monotonic() + 60
        while not all(out.exists() and out.read_text().split() for out in outputs) and time.monotonic() < deadline:
            time.sleep(0.05)
        for _ in range(3):
            deadline = time.monotonic() + 30
            before = sum(executions(outputs).values())
            while sum(executions(outputs).values()) < before + 300 and time.monotonic() < deadline:
                time.sleep(0.05)
            killed.append(terminate_backends(store_url))
        counts = asyncio.run(wait_until_completed(store_url, count, timeout=180))
    finally:
        logs = stop(workers)
    assert all(k > 0 for k in killed), killed
    assert counts[ScheduledCommandStatus.COMPLETED] == count, (counts, logs[0][-3000:])
    seen = executions(outputs)
    assert sorted(seen) == list(range(count)), "nothing lost"
    assert max(seen.values()) == 1, "nothing ran twice: an interrupted write is retried, fenced by its lease"
    assert any("unavailable" in log or "failed" in log for log in logs), "the outage was logged"
    assert all(w.returncode == 0 for w in workers), ([w.returncode for w in workers], [log[-4000:] for log in logs])
