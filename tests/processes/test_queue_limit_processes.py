"""Fleet-wide queue limits held by real worker processes on SQLite and PostgreSQL, ``max_running`` on Redis too
(docs/queues.md): ``max_running``
across 4 processes of concurrency 10, and a rate of starts.

Handlers record their start and end on the machine's monotonic clock (tests/support/fleet_app.py): a handler runs
within its entry's PROCESSING time (claimed before it starts, finished after it ends), so what the handlers show
running at once is at most what the store had PROCESSING. Every wait is a bounded poll.
"""

from __future__ import annotations

import bisect
import time
from datetime import timedelta
from pathlib import Path

import pytest
from fleet_app import OldJob
from test_fleet_processes import any_store_url, completed, run, runs, start_worker, store_url, wait_for
from test_multiworker import stop

from scheduling import CommandScheduler, RateLimit, ScheduleOptions
from stores import ScheduledCommandStore

__all__ = ["any_store_url", "store_url"]  # the fixtures: SQLite and PostgreSQL, and Redis too

SECOND_NS = 1_000_000_000


@pytest.mark.timeout(120)
def test_max_running_holds_across_four_processes_and_the_queue_drains(any_store_url: str, tmp_path: Path) -> None:
    """max_running=3, 4 processes x concurrency 10: never more than 3 handlers at once, and every entry runs."""
    store_url = any_store_url

    async def limit(scheduler: CommandScheduler, _: ScheduledCommandStore) -> None:
        await scheduler.set_queue_limits("api", max_running=3)

    async def schedule(scheduler: CommandScheduler, _: ScheduledCommandStore) -> None:
        jobs = [OldJob(n=n, seconds=0.05) for n in range(90)]
        await scheduler.schedule_many(jobs, ScheduleOptions(queue="api"))

    run(limit, store_url)
    outs = [tmp_path / f"worker-{i}.out" for i in range(4)]
    workers = [start_worker(store_url, out) for out in outs]
    try:
        # Started and idle before the entries come: on a loaded machine the first worker up could otherwise run all
        # 90 (4.5 s of work at 3 at once) before the others have started, and "one process ran everything".
        wait_until_registered(store_url, 4)
        run(schedule, store_url)
        entries = wait_for(store_url, completed(OldJob, 90), timeout=55)
    finally:
        logs = stop(workers)
    assert completed(OldJob, 90)(entries), logs[0][-2000:]
    events = sorted((ns, 0 if event == "end" else 1) for out in outs for event, _, _, ns in runs(out))
    assert len(events) == 180
    running = peak = 0
    for _, starting in events:  # an end before a start at the same instant
        running += 1 if starting else -1
        peak = max(peak, running)
    assert peak <= 3, f"{peak} entries of a queue with max_running=3 ran at once"
    assert peak == 3, "the limit was never reached: the test shows nothing"
    assert sum(1 for out in outs if runs(out)) >= 2, "one process ran everything"


@pytest.mark.timeout(120)
def test_a_rate_of_50_per_second_holds_within_10_percent_over_5_seconds(store_url: str, tmp_path: Path) -> None:
    """A rate of 50 per 1 s, 4 processes x concurrency 10, 320 due entries: the fleet starts them at 45-55/s over
    5 s, and no 1 s of handler starts holds more than 50 and the batches that claim latency moves across an edge.

    The rate: the 250 starts from the 51st on (the first 50 start at once, a full window's worth; the 51st is the
    first of the second window, the 301st of the seventh) take 250/55 to 250/45 s. A start slot is free again a
    period after its last start, so a window's claims that came late would delay every later window: workers whose
    claim came back empty sleep until the store's ``next_start_at`` (docs/queues.md) and claim at that moment.

    The bound: the store holds at most 50 claims within any 1 s of the claims' own times (the contract tests check
    it to the microsecond). A handler starts a claim's round trip after that time, and on this loaded 2-core machine
    one claim's round trip (waiting for the CPU, for SQLite's write lock) may take 0.2 s longer than the next
    window's: its batch then lands in that window too. So the handlers' own monotonic timestamps are allowed one
    late batch per worker (``4 * 10``) over 50 in any 1 s. The run lasts about 8 s, its workers started and idle
    before the entries are scheduled.
    """

    async def limit(scheduler: CommandScheduler, _: ScheduledCommandStore) -> None:
        await scheduler.set_queue_limits("api", rate=RateLimit(count=50, per=timedelta(seconds=1)))

    async def schedule(scheduler: CommandScheduler, _: ScheduledCommandStore) -> None:
        await scheduler.schedule_many([OldJob(n=n) for n in range(320)], ScheduleOptions(queue="api"))

    run(limit, store_url)
    outs = [tmp_path / f"worker-{i}.out" for i in range(4)]
    workers = [start_worker(store_url, out) for out in outs]
    try:
        # Started and idle before the entries come: the first window's claims are not slowed by 4 start-ups.
        wait_until_registered(store_url, 4)
        run(schedule, store_url)
        entries = wait_for(store_url, completed(OldJob, 320), timeout=55)
    finally:
        logs = stop(workers)
    assert completed(OldJob, 320)(entries), logs[0][-2000:]
    starts = sorted(ns for out in outs for event, _, _, ns in runs(out) if event == "start")
    assert len(starts) == 320

    span = (starts[300] - starts[50]) / SECOND_NS
    width = SECOND_NS
    busiest = max(bisect.bisect_left(starts, start + width) - bisect.bisect_left(starts, start) for start in starts)
    print(f"the 51st to the 301st start: {span:.3f} s ({250 / span:.1f}/s); busiest 1 s: {busiest} handler starts")
    assert 250 / 55 <= span <= 250 / 45, f"250 handler starts took {span:.2f} s at a rate of 50 per 1 s"
    assert 50 <= busiest <= 50 + 4 * 10, f"{busiest} handler starts within 1 s at a rate of 50 per 1 s"


def wait_until_registered(store_url: str, count: int) -> None:
    """Poll the worker registry (bounded: 30 s) until ``count`` workers have registered."""

    async def registered(_: CommandScheduler, store: ScheduledCommandStore) -> int:
        return len(await store.list_workers())

    deadline = time.monotonic() + 30
    while run(registered, store_url) < count and time.monotonic() < deadline:
        time.sleep(0.1)
