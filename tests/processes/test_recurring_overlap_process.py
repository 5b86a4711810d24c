"""A recurring job longer than its interval, on real worker processes: with ``overlap=False`` (the default) its
occurrences never run at once; with ``overlap=True`` they do (docs/queues.md, "locks").

The job runs 2.5 s every 1 s on two worker processes of concurrency 10 (SQLite and PostgreSQL). The handlers record
their start and end on the machine's monotonic clock; the peak of runs in progress is measured from those records.
Every wait is a bounded poll.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from fleet_app import OldJob
from test_fleet_processes import run, runs, start_worker, store_url
from test_multiworker import stop

from scheduling import CommandScheduler
from stores import ScheduledCommandStore

__all__ = ["store_url"]  # the fixture, shared with the fleet tests


def peak_running(outs: list[Path]) -> tuple[int, int]:
    """``(finished runs, the most runs in progress at once)`` from the handlers' records in ``outs``."""
    events = sorted((ns, event) for out in outs for event, _, _, ns in runs(out))
    running = peak = 0
    for _, event in events:
        running += 1 if event == "start" else -1
        peak = max(peak, running)
    return sum(1 for _, event in events if event == "end"), peak


def run_recurring(store_url: str, tmp_path: Path, *, overlap: bool, finished: int, timeout: float) -> tuple[int, int]:
    async def declare(scheduler: CommandScheduler, _: ScheduledCommandStore) -> None:
        job = OldJob(n=0, seconds=2.5)
        await scheduler.schedule_recurring("slow", job, interval=timedelta(seconds=1), overlap=overlap)

    run(declare, store_url)
    outs = [tmp_path / f"worker-{i}.out" for i in range(2)]
    workers = [start_worker(store_url, out) for out in outs]
    try:
        deadline = time.monotonic() + timeout
        while peak_running(outs)[0] < finished and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        logs = stop(workers)
    result = peak_running(outs)
    assert result[0] >= finished, (result, logs[0][-2000:])
    return result


@pytest.mark.timeout(60)
def test_a_recurring_job_longer_than_its_interval_never_overlaps_itself_by_default(
    store_url: str, tmp_path: Path
) -> None:
    """Three runs of 2.5 s on a 1 s interval, one after the other: never two at once across both processes."""
    _, peak = run_recurring(store_url, tmp_path, overlap=False, finished=3, timeout=30)
    assert peak == 1, "occurrences of a recurring schedule with overlap=False ran at once"


@pytest.mark.timeout(60)
def test_a_recurring_job_with_overlap_runs_beside_itself(store_url: str, tmp_path: Path) -> None:
    """With ``overlap=True`` the next occurrence starts while the last still runs (about 3 at once)."""
    _, peak = run_recurring(store_url, tmp_path, overlap=True, finished=3, timeout=30)
    assert peak >= 2, "occurrences of a recurring schedule with overlap=True never ran at once"
