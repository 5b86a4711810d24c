"""Scheduler throughput and latency on the in-memory store.

Run with ``.venv/bin/python bench/scheduler_memory.py`` (never part of ``make test``). Prints exactly three JSON
lines to stdout, one per measurement:

- ``schedule_rate``: commands/s for ``schedule()`` one at a time and ``schedule_many()`` in batches, median of
  ``REPEATS`` runs, each on a fresh store.
- ``drain_rate``: commands/s for running ``DRAIN_COMMANDS`` commands that are all due now to COMPLETED, with
  ``run_until_idle()`` and with the background service (``async with service:``), for several settings.
- ``due_to_start_latency``: with the service running and default settings, ``LATENCY_COMMANDS`` commands due at
  uniformly spread times over ``LATENCY_SPREAD_S``; latency is the handler's start time minus ``scheduled_for``.

Everything uses ``SystemClock``, ``MemoryStore`` and trivial async handlers registered through ``MediatorModule``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import json
import os
import platform
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from injector import Injector

from mediator import Command, CommandHandler, MediatorModule
from scheduling import (
    CommandScheduler,
    ScheduledCommandService,
    ScheduledCommandStatus,
    ScheduleOptions,
    SchedulerSettings,
    SchedulingModule,
    SystemClock,
)
from stores import MemoryStore

REPEATS = 3
SCHEDULE_ONE_COMMANDS = 5_000
SCHEDULE_MANY_COMMANDS = 50_000
SCHEDULE_MANY_BATCH = 1_000
DRAIN_COMMANDS = 20_000
DRAIN_POLL_S = 0.01
DRAIN_TIMEOUT_S = 60.0
DRAIN_TARGET_PER_S = 20_000
DRAIN_SETTINGS: list[dict[str, Any]] = [{}, {"max_concurrency": 100, "batch_size": 100}]
LATENCY_COMMANDS = 500
LATENCY_SPREAD_S = 5.0
LATENCY_LEAD_S = 0.25  # the first due time is this far after the burst of schedule() calls starts
LATENCY_TARGET_P99_MS = 10.0
SEED = 20_260_101

COMPLETED = ScheduledCommandStatus.COMPLETED


# -- commands and handlers -----------------------------------------------------------------------------------------


class Noop(Command[None]):
    """Does nothing."""

    n: int = 0


class Timed(Command[None]):
    """Records when its handler started, under ``n``."""

    n: int


#: ``Timed.n`` -> ``time.time()`` when its handler started.
STARTED_AT: dict[int, float] = {}
#: Set by ``TimedHandler`` once ``LATENCY_COMMANDS`` handlers have started.
ALL_STARTED = asyncio.Event()


class NoopHandler(CommandHandler[Noop, None]):
    async def handle(self, command: Noop) -> None:
        return None


class TimedHandler(CommandHandler[Timed, None]):
    async def handle(self, command: Timed) -> None:
        STARTED_AT[command.n] = time.time()
        if len(STARTED_AT) >= LATENCY_COMMANDS:
            ALL_STARTED.set()


# -- helpers -------------------------------------------------------------------------------------------------------


class Setup:
    """A fresh injector, store, scheduler and service."""

    def __init__(self, settings: SchedulerSettings | None = None) -> None:
        self.store = MemoryStore()
        self.settings = settings or SchedulerSettings()
        injector = Injector(
            [
                MediatorModule(handlers=[NoopHandler, TimedHandler]),
                SchedulingModule(store=self.store, settings=self.settings, clock=SystemClock()),
            ]
        )
        self.scheduler = injector.get(CommandScheduler)
        self.service = injector.get(ScheduledCommandService)


def header(bench: str) -> dict[str, Any]:
    return {
        "bench": bench,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
    }


def settings_summary(settings: SchedulerSettings) -> dict[str, Any]:
    return {
        "max_concurrency": settings.max_concurrency,
        "batch_size": settings.batch_size,
        "polling_interval_s": settings.polling_interval.total_seconds(),
    }


async def timed(run: Callable[[], Awaitable[None]]) -> float:
    """Seconds one ``await run()`` takes, after a garbage collection."""
    gc.collect()
    start = time.perf_counter()
    await run()
    return time.perf_counter() - start


async def schedule_all(setup: Setup, commands: list[Noop], batch: int = SCHEDULE_MANY_BATCH) -> None:
    for i in range(0, len(commands), batch):
        await setup.scheduler.schedule_many(commands[i : i + batch])


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1)


# -- (a) scheduling ------------------------------------------------------------------------------------------------


async def schedule_rate() -> dict[str, Any]:
    one: list[float] = []
    many: list[float] = []
    many_same_count: list[float] = []  # schedule_many with as many commands as schedule(): store size differs
    for _ in range(REPEATS):
        setup = Setup()
        commands = [Noop(n=i) for i in range(SCHEDULE_ONE_COMMANDS)]

        async def one_by_one(setup: Setup = setup, commands: list[Noop] = commands) -> None:
            schedule = setup.scheduler.schedule
            for command in commands:
                await schedule(command)

        one.append(rate(SCHEDULE_ONE_COMMANDS, await timed(one_by_one)))

        for count, samples in ((SCHEDULE_MANY_COMMANDS, many), (SCHEDULE_ONE_COMMANDS, many_same_count)):
            setup = Setup()
            commands = [Noop(n=i) for i in range(count)]

            async def in_batches(setup: Setup = setup, commands: list[Noop] = commands) -> None:
                await schedule_all(setup, commands)

            samples.append(rate(count, await timed(in_batches)))
    return {
        **header("schedule_rate"),
        "params": {
            "repeats": REPEATS,
            "schedule_commands": SCHEDULE_ONE_COMMANDS,
            "schedule_many_commands": SCHEDULE_MANY_COMMANDS,
            "schedule_many_batch": SCHEDULE_MANY_BATCH,
            "options": "none (due now)",
            "commands_built_before_timing": True,
        },
        "schedule_per_s": statistics.median(one),
        "schedule_many_per_s": statistics.median(many),
        f"schedule_many_{SCHEDULE_ONE_COMMANDS}_per_s": statistics.median(many_same_count),
        "samples": {
            "schedule_per_s": one,
            "schedule_many_per_s": many,
            f"schedule_many_{SCHEDULE_ONE_COMMANDS}_per_s": many_same_count,
        },
    }


# -- (b) draining --------------------------------------------------------------------------------------------------


async def prepared(settings: SchedulerSettings) -> Setup:
    """A fresh setup holding DRAIN_COMMANDS commands that are due now."""
    setup = Setup(settings)
    await schedule_all(setup, [Noop(n=i) for i in range(DRAIN_COMMANDS)])
    return setup


async def drain_until_idle(settings: SchedulerSettings) -> float:
    setup = await prepared(settings)

    async def run() -> None:
        handled = await setup.service.run_until_idle()
        assert handled == DRAIN_COMMANDS, handled

    seconds = await timed(run)
    counts = await setup.store.count_by_status()
    assert counts[COMPLETED] == DRAIN_COMMANDS, counts
    return seconds


async def drain_background(settings: SchedulerSettings) -> float:
    setup = await prepared(settings)
    store = setup.store
    elapsed = 0.0

    async def run() -> None:
        nonlocal elapsed
        start = time.perf_counter()
        async with setup.service:
            while (await store.count_by_status())[COMPLETED] < DRAIN_COMMANDS:
                if time.perf_counter() - start > DRAIN_TIMEOUT_S:
                    raise TimeoutError(f"not drained after {DRAIN_TIMEOUT_S}s: {await store.count_by_status()}")
                await asyncio.sleep(DRAIN_POLL_S)
            elapsed = time.perf_counter() - start  # the graceful stop on exit is not counted

    await timed(run)
    return elapsed


async def drain_rate() -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    best = 0.0
    for overrides in DRAIN_SETTINGS:
        settings = SchedulerSettings(**overrides)
        idle = [rate(DRAIN_COMMANDS, await drain_until_idle(settings)) for _ in range(REPEATS)]
        background = [rate(DRAIN_COMMANDS, await drain_background(settings)) for _ in range(REPEATS)]
        best = max(best, statistics.median(idle), statistics.median(background))
        results.append(
            {
                "settings": settings_summary(settings),
                "run_until_idle_per_s": statistics.median(idle),
                "background_per_s": statistics.median(background),
                "samples": {"run_until_idle_per_s": idle, "background_per_s": background},
            }
        )
    return {
        **header("drain_rate"),
        "params": {
            "repeats": REPEATS,
            "commands": DRAIN_COMMANDS,
            "scheduled_with": f"schedule_many, batches of {SCHEDULE_MANY_BATCH}, due now (not timed)",
            "background_poll_s": DRAIN_POLL_S,
        },
        "target_per_s": DRAIN_TARGET_PER_S,
        "results": results,
        "meets_target": best >= DRAIN_TARGET_PER_S,
    }


# -- (c) latency ---------------------------------------------------------------------------------------------------


async def due_to_start_latency() -> dict[str, Any]:
    STARTED_AT.clear()
    ALL_STARTED.clear()
    setup = Setup()
    rng = random.Random(SEED)
    offsets = [rng.uniform(0, LATENCY_SPREAD_S) for _ in range(LATENCY_COMMANDS)]
    async with setup.service:
        await asyncio.sleep(0.1)  # let the service reach its first sleep
        base = SystemClock().now() + dt.timedelta(seconds=LATENCY_LEAD_S)
        due = [base + dt.timedelta(seconds=offset) for offset in offsets]
        plan = [(Timed(n=n), ScheduleOptions(scheduled_for=when)) for n, when in enumerate(due)]
        burst = time.perf_counter()
        for command, options in plan:  # in random due order: later commands are often due sooner
            await setup.scheduler.schedule(command, options)
        burst = time.perf_counter() - burst
        with contextlib.suppress(TimeoutError):  # reported as "started" < "commands"
            await asyncio.wait_for(ALL_STARTED.wait(), timeout=LATENCY_LEAD_S + LATENCY_SPREAD_S + 10)
    latencies = sorted((STARTED_AT[n] - due[n].timestamp()) * 1000 for n in STARTED_AT)
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        **header("due_to_start_latency"),
        "params": {
            "commands": LATENCY_COMMANDS,
            "spread_s": LATENCY_SPREAD_S,
            "lead_s": LATENCY_LEAD_S,
            "distribution": "uniform random (seeded), scheduled in random due order with schedule() after start",
            "settings": settings_summary(setup.settings),
        },
        "scheduling_burst_ms": round(burst * 1000, 1),
        "started": len(latencies),
        "latency_ms": {
            "min": round(latencies[0], 3),
            "p50": round(cuts[49], 3),
            "p95": round(cuts[94], 3),
            "p99": round(cuts[98], 3),
            "max": round(latencies[-1], 3),
        },
        "target_p99_ms": LATENCY_TARGET_P99_MS,
        "meets_target": len(latencies) == LATENCY_COMMANDS and cuts[98] <= LATENCY_TARGET_P99_MS,
    }


async def main() -> None:
    for measure in (schedule_rate, drain_rate, due_to_start_latency):
        print(json.dumps(await measure()), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
