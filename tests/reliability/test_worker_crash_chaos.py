"""Worker crash chaos: worker processes drain the store while a chaos loop SIGKILLs one about every second.

A killed worker's in-flight commands come back when their 2 s leases expire: another worker records a ``lost``
attempt and runs them again. Afterwards every command is COMPLETED, none was lost (each job number executed at
least once), each entry has exactly one ``completed`` attempt (the lease fence), and the commands executed more
than once are bounded by what the killed workers had in flight: kills x 2 x concurrency (a worker runs up to
``concurrency`` handlers and holds up to as many entries whose handlers returned and whose outcomes are on their
way).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from reliability_support import (
    Fleet,
    attempt_outcomes,
    entries_completed_twice,
    executed_lines,
    executions,
    fresh_postgres_database,
    schedule_jobs,
    wait_until_completed,
)

from scheduling import ScheduledCommandStatus

# Fleets of worker processes under load, timed by their own clocks: the Makefile's --dist loadgroup runs the tests of
# this group one after another, so two fleets never share the two cores (a starved fleet misses its rates and leases).
pytestmark = pytest.mark.xdist_group("worker-fleets")

CONCURRENCY = 10


@dataclass
class ChaosResult:
    kills: int
    processes_started: int
    duplicates: int
    extra_executions: int
    lost_attempts: int
    seconds: float

    def __str__(self) -> str:
        return (
            f"kills={self.kills} processes={self.processes_started} duplicated_jobs={self.duplicates} "
            f"extra_executions={self.extra_executions} lost_attempts={self.lost_attempts} seconds={self.seconds:.1f}"
        )


def run_chaos(
    store_url: str,
    directory: Path,
    *,
    processes: int,
    count: int,
    max_kills: int,
    seed: int,
    interval: float = 1.0,
    stop_at: float = 0.9,
    timeout: float = 150,
) -> ChaosResult:
    """Drain ``count`` jobs with ``processes`` workers, SIGKILLing a random one about every ``interval`` seconds
    (and starting a replacement) until ``max_kills`` or until ``stop_at`` of the jobs executed; check everything."""
    asyncio.run(schedule_jobs(store_url, count, seconds=0.001))
    fleet = Fleet(store_url, directory, concurrency=CONCURRENCY)
    rng = random.Random(seed)
    started = time.monotonic()
    kills = 0
    try:
        for _ in range(processes):
            fleet.start()
        while kills < max_kills and time.monotonic() - started < timeout / 2:
            time.sleep(rng.uniform(0.6 * interval, 1.4 * interval))
            if executed_lines(fleet.outputs) >= stop_at * count:
                break
            fleet.kill(rng.choice(fleet.alive))
            kills += 1
            fleet.start()
        counts = asyncio.run(wait_until_completed(store_url, count, timeout=timeout))
        seconds = time.monotonic() - started
    finally:
        fleet.stop()
    assert counts[ScheduledCommandStatus.COMPLETED] == count, (counts, fleet.logs()[-3000:])
    seen = executions(fleet.outputs)
    assert sorted(seen) == list(range(count)), "no command was lost"
    duplicates = [n for n, times in seen.items() if times > 1]
    extra = sum(seen.values()) - count
    outcomes = attempt_outcomes(store_url)
    result = ChaosResult(kills, len(fleet.workers), len(duplicates), extra, outcomes["lost"], seconds)
    print(f"\nchaos on {store_url.split(':', 1)[0]}: {result}")
    assert kills > 0, "the chaos loop killed nobody: the drain finished before the first kill"
    assert extra <= kills * 2 * CONCURRENCY, f"{result}: more re-runs than the killed workers had in flight"
    assert outcomes["completed"] == count, f"one completed attempt per entry: {outcomes}"
    assert entries_completed_twice(store_url) == 0, "the lease fence let two workers complete one entry"
    assert outcomes["lost"] >= extra, f"every re-run follows a lost attempt in the audit trail: {outcomes}"
    assert outcomes["failed"] == outcomes["timed_out"] == 0, outcomes
    survivors = [w for w in fleet.workers if w.process.returncode != -9]
    assert all(w.process.returncode == 0 for w in survivors), [w.process.returncode for w in survivors]
    return result


@pytest.mark.timeout(240)
def test_sigkilled_postgresql_workers_lose_nothing(tmp_path: Path, postgres_url: str) -> None:
    """4 workers on PostgreSQL drain 20,000 commands while one of them is SIGKILLed about every second."""
    with fresh_postgres_database(postgres_url, "chaos") as store_url:
        run_chaos(store_url, tmp_path, processes=4, count=20_000, max_kills=15, seed=8)


@pytest.mark.timeout(240)
def test_sigkilled_sqlite_workers_lose_nothing(tmp_path: Path) -> None:
    """2 workers on one SQLite file drain 10,000 commands while one of them is SIGKILLed about every second."""
    store_url = f"sqlite:///{tmp_path / 'chaos.db'}"
    run_chaos(store_url, tmp_path, processes=2, count=10_000, max_kills=10, seed=8)


@pytest.mark.timeout(240)
def test_sigkilled_redis_workers_lose_nothing(tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    """4 workers on Redis drain 20,000 commands while one of them is SIGKILLed about every second."""
    run_chaos(f"{redis_url}?prefix={redis_prefix}", tmp_path, processes=4, count=20_000, max_kills=15, seed=8)


@pytest.mark.soak
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_soak_sigkilled_workers_lose_nothing(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The long variant: 100,000 commands, up to 100 kills, a kill about every half second."""
    if backend == "sqlite":
        run_chaos(
            f"sqlite:///{tmp_path / 'soak.db'}",
            tmp_path,
            processes=2,
            count=50_000,
            max_kills=100,
            seed=1,
            timeout=1500,
        )
        return
    with fresh_postgres_database(request.getfixturevalue("postgres_url"), "soak") as store_url:
        run_chaos(store_url, tmp_path, processes=4, count=100_000, max_kills=100, seed=1, interval=0.5, timeout=1500)
