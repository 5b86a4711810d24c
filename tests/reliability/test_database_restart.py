"""The database goes away in the middle of a drain by 2 worker processes: they log, back off, reconnect, finish.

Two faults: a real restart of the PostgreSQL server (when this process may restart the local cluster: root on a
machine with ``pg_ctlcluster``; skipped elsewhere), and a 2-second outage of the store's database, in which every
connection is terminated and new ones are refused (``ALLOW_CONNECTIONS false``), which any superuser can cause.
Nothing is lost; a command runs twice only if its lease expired during the outage, so at most what the two
workers had in flight.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from reliability_support import (
    Fleet,
    admin_conninfo,
    attempt_outcomes,
    entries_completed_twice,
    executed_lines,
    executions,
    fresh_postgres_database,
    schedule_jobs,
    wait_for_postgres,
    wait_until_completed,
)
from sqlalchemy.engine import make_url

from scheduling import ScheduledCommandStatus

COUNT = 6_000
CONCURRENCY = 10


def local_cluster(url: str) -> tuple[str, str] | None:
    """``(version, name)`` of the local cluster serving ``url``, when this process may restart it; else None."""
    parsed = make_url(url)
    if parsed.host not in ("127.0.0.1", "localhost", None) or shutil.which("pg_lsclusters") is None:
        return None
    if os.geteuid() != 0 or shutil.which("pg_ctlcluster") is None:
        return None
    listing = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=False).stdout
    for line in listing.splitlines():
        version, name, port, status, *_ = line.split()
        if int(port) == (parsed.port or 5432) and status == "online":
            return version, name
    return None


def restart_server(url: str) -> None:
    cluster = local_cluster(url)
    assert cluster is not None
    subprocess.run(["pg_ctlcluster", *cluster, "restart"], check=True, timeout=120, capture_output=True)


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
def test_workers_finish_the_drain_through_a_server_restart(tmp_path: Path, postgres_url: str) -> None:
    """The PostgreSQL server is restarted (fast shutdown, start) in the middle of a drain."""
    if local_cluster(postgres_url) is None:
        pytest.skip("restarting the server needs root and pg_ctlcluster on the machine that runs it")
    cluster = local_cluster(postgres_url)
    try:
        with fresh_postgres_database(postgres_url, "restart") as store_url:
            drain_through(restart_server, store_url, tmp_path)
    finally:
        if not wait_for_postgres(postgres_url, timeout=30) and cluster is not None:
            subprocess.run(["pg_ctlcluster", *cluster, "start"], check=False, timeout=120)
        assert wait_for_postgres(postgres_url, timeout=30), "the server is up again after the test"


@pytest.mark.timeout(200)
def test_workers_finish_the_drain_through_a_database_outage(tmp_path: Path, postgres_url: str) -> None:
    """For 2 s every connection to the store's database is terminated and new ones are refused."""
    with fresh_postgres_database(postgres_url, "outage") as store_url:
        drain_through(cut_off_database, store_url, tmp_path)
