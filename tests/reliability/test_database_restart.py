"""The database goes away in the middle of a drain by 2 worker processes: they log, back off, reconnect, finish.

Two faults: a real restart of the PostgreSQL server (fast shutdown, start), and a 2-second outage of the store's
database, in which every connection is terminated and new ones are refused (``ALLOW_CONNECTIONS false``). Both
happen on a throwaway server of the test's own (the ``throwaway_postgres`` fixture), never on the shared one.
Nothing is lost; a command runs twice only if its lease expired during the outage, so at most what the two
workers had in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from postgres_servers import ThrowawayPostgres, postmaster_start_time
from reliability_support import (
    Fleet,
    admin_conninfo,
    attempt_outcomes,
    entries_completed_twice,
    executed_lines,
    executions,
    schedule_jobs,
    wait_until_completed,
)
from sqlalchemy.engine import make_url

from scheduling import ScheduledCommandStatus

COUNT = 6_000
CONCURRENCY = 10


def cut_off_database(url: str, seconds: float = 2.0) -> None:
    """Refuse new connections to the store's database and terminate the open ones, for ``seconds``."""
    database = make_url(url).database
    with psycopg.connect(admin_conninfo(url, "postgres"), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,))
                time.sleep(0.1)
        finally:
            conn.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')


def drain_through(fault: Callable[[str], None], store_url: str, directory: Path) -> None:
    asyncio.run(schedule_jobs(store_url, COUNT, seconds=0.01))
    fleet = Fleet(store_url, directory, concurrency=CONCURRENCY)
    try:
        for _ in range(2):
            fleet.start()
        deadline = time.monotonic() + 60
        while executed_lines(fleet.outputs) < COUNT // 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        before = executed_lines(fleet.outputs)
        fault_started = time.monotonic()
        fault(store_url)
        fault_ended = time.monotonic()
        fault_seconds = fault_ended - fault_started
        # Commands in flight may finish during the fault; new claims show that the workers reconnected.
        after_fault = executed_lines(fleet.outputs)
        while (
            after_fault + 2 * CONCURRENCY >= executed_lines(fleet.outputs) < COUNT and time.monotonic() < deadline + 60
        ):
            time.sleep(0.02)
        resumed_after = time.monotonic() - fault_ended
        counts = asyncio.run(wait_until_completed(store_url, COUNT, timeout=120))
    finally:
        fleet.stop()
    logs = fleet.logs()
    assert counts[ScheduledCommandStatus.COMPLETED] == COUNT, (counts, logs[-3000:])
    seen = executions(fleet.outputs)
    assert sorted(seen) == list(range(COUNT)), "no command was lost"
    extra = sum(seen.values()) - COUNT
    outcomes = attempt_outcomes(store_url)
    print(
        f"\n{fault.__name__}: executed_before={before} fault_seconds={fault_seconds:.1f} "
        f"resumed_after={resumed_after:.1f}s executed_at_fault_end={after_fault} extra_executions={extra} "
        f"attempts={dict(outcomes)}"
    )
    assert extra <= 2 * CONCURRENCY, "only commands whose lease expired during the outage may run again"
    assert outcomes["completed"] == COUNT
    assert entries_completed_twice(store_url) == 0
    assert '"claim_failed"' in logs or '"store_retry"' in logs or '"step_failed"' in logs, "the outage was logged"
    assert '"listen_failed"' in logs, "the wake-up listener noticed the outage"
    assert [w.process.returncode for w in fleet.workers] == [0, 0], logs[-3000:]


@pytest.mark.timeout(200)
def test_workers_finish_the_drain_through_a_server_restart(
    tmp_path: Path, throwaway_postgres: ThrowawayPostgres
) -> None:
    """The PostgreSQL server is restarted (fast shutdown, start) in the middle of a drain."""
    started = postmaster_start_time(throwaway_postgres.url)

    def restart_server(store_url: str) -> None:
        throwaway_postgres.restart()

    drain_through(restart_server, throwaway_postgres.create_database("restart"), tmp_path)
    assert postmaster_start_time(throwaway_postgres.url) != started, "the server was restarted"


@pytest.mark.timeout(200)
def test_workers_finish_the_drain_through_a_database_outage(
    tmp_path: Path, throwaway_postgres: ThrowawayPostgres
) -> None:
    """For 2 s every connection to the store's database is terminated and new ones are refused."""
    drain_through(cut_off_database, throwaway_postgres.create_database("outage"), tmp_path)
