"""Our side of ``bench/side_by_side.py``: the workloads of ``scheduler_sql.py`` at the peers' N, with CPU time.

- ``schedule``: ``schedule()`` one at a time, 100 coroutines calling ``schedule()`` at once, and one
  ``schedule_many()`` of N (the peers' batch enqueue is one call of N), each on a fresh database, in this process.
- ``drain``: ``scheduler_sql.drain_once`` (N due no-op commands, worker processes) with a meter: CPU of the worker
  processes from when they logged their start until the parent saw everything COMPLETED, and on PostgreSQL the
  write cost from before the workers started until they exited.
- ``latency``: ``scheduler_sql.latency`` (scheduled ahead by this process) and ``latency_due_now``.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from _bench_app import Noop
from _meter import COUNTED, PgProbe, cpu_delta, processes_cpu_s, write_cost
from scheduler_sql import Bench, drain_once, latency, latency_due_now, libpq, progress, rate, scheduler_for

from scheduling import CommandScheduler, SchedulerSettings
from stores import SqlStore

if TYPE_CHECKING:
    from side_by_side import Results

PRODUCERS = 100
_DEFAULTS = SchedulerSettings()
#: (processes, max_concurrency, batch_size) per backend: the defaults (as the settings have them), and the best
#: configuration of issue 16. On PostgreSQL 2 x 200 since the worker's statements run generic plans (planning no
#: longer costs each claim its milliseconds): 9,625-10,989/s against 7,987-8,117/s for 4 x 100 on this 2-core
#: machine, interleaved, with half the worker CPU per command (docs/performance.md). SQLite: 1 x 100, as fast as
#: 200, 400 or two processes.
DRAINS = {
    "default": dict.fromkeys(("postgresql", "sqlite"), (1, _DEFAULTS.max_concurrency, _DEFAULTS.batch_size)),
    "best": {"postgresql": (2, 200, 200), "sqlite": (1, 100, 100)},
}


def cpu_fields(count: int, **seconds: float | None) -> dict[str, Any]:
    """Each CPU figure in seconds and per command, their total per command, and what each counts."""
    fields: dict[str, Any] = {}
    total = 0.0
    for name, value in seconds.items():
        if value is None:
            continue
        fields[name] = round(value, 3)
        fields[name.removesuffix("_s").removesuffix("_cpu") + "_us_per_command"] = round(value / count * 1e6, 1)
        total += value
    fields["total_us_per_command"] = round(total / count * 1e6, 1)
    fields["counted"] = {name: COUNTED[name] for name in seconds if seconds[name] is not None}
    return fields


def workload(measurement: str, scheduler: CommandScheduler, commands: list[Noop]) -> Callable[[], Awaitable[None]]:
    """The timed part of a scheduling measurement."""

    async def single() -> None:
        for command in commands:
            await scheduler.schedule(command)

    async def producer(part: list[Noop]) -> None:
        for command in part:
            await scheduler.schedule(command)

    async def concurrent() -> None:
        size = -(-len(commands) // PRODUCERS)
        await asyncio.gather(*(producer(commands[i : i + size]) for i in range(0, len(commands), size)))

    async def many() -> None:
        await scheduler.schedule_many(commands)

    return {"schedule_single": single, "schedule_many": many}.get(measurement, concurrent)


class OursRunner:
    def __init__(self, bench: Bench, n: int) -> None:
        self.bench = bench
        self.n = n

    async def _measured(
        self, backend: str, url: str, work: Callable[[], Awaitable[None]]
    ) -> tuple[float, dict[str, Any]]:
        """Run ``work`` once: its rate over N and its CPU (this process, and the database's backends)."""
        probe = PgProbe(libpq(url)) if backend == "postgresql" else None
        try:
            gc.collect()
            server_before = probe.snapshot(stats=False)["server_cpu"] if probe else {}
            cpu_before = time.process_time()
            start = time.perf_counter()
            await work()
            elapsed = time.perf_counter() - start
            bench_cpu = time.process_time() - cpu_before
            server = cpu_delta(server_before, probe.snapshot(stats=False)["server_cpu"]) if probe else None
        finally:
            if probe is not None:
                probe.close()
        return rate(self.n, elapsed), cpu_fields(self.n, bench_cpu_s=bench_cpu, server_cpu_s=server)

    async def schedule(self, results: Results, round_: int, backend: str) -> None:
        commands = [Noop(n=n) for n in range(self.n)]
        for measurement in ("schedule_single", f"schedule_concurrent_{PRODUCERS}", "schedule_many"):
            if measurement == "schedule_many" and backend == "sqlite":
                continue  # no row of the table: huey has no batch enqueue
            progress(f"round {round_}: ours {measurement} {backend}")
            async with self.bench.fresh_url(backend, "sbs") as url, SqlStore(url) as store:
                work = workload(measurement, scheduler_for(store), commands)
                per_s, cpu = await self._measured(backend, url, work)
                stored = sum((await store.count_by_status()).values())
            results.record(
                "ours",
                {
                    "bench": "side_by_side",
                    "round": round_,
                    "who": "ours",
                    "measurement": f"{measurement}_{backend}",
                    "backend": backend,
                    "n": self.n,
                    "per_s": per_s,
                    "cpu": cpu,
                    "stored": stored,
                    "producers": PRODUCERS if measurement.startswith("schedule_concurrent") else 1,
                },
            )

    async def drain(self, results: Results, round_: int, backend: str, which: str) -> None:
        processes, concurrency, batch = DRAINS[which][backend]
        progress(f"round {round_}: ours drain {which} {backend} ({processes} x concurrency {concurrency})")
        meter = DrainCost(backend, self.n)
        run = await drain_once(self.bench, backend, processes, concurrency, batch, meter)
        seconds = run.get("first_start_to_completed_s")
        document: dict[str, Any] = {
            "bench": "side_by_side",
            "round": round_,
            "who": "ours",
            "measurement": f"drain_{which}_{backend}",
            "backend": backend,
            "n": self.n,
            "settings": {"processes": processes, "max_concurrency": concurrency, "batch_size": batch},
            "per_s": rate(self.n, seconds) if seconds else None,
            "clock": "first handler start until the parent saw every entry COMPLETED",
            "handler_window_per_s": rate(self.n, run["handler_window_s"]) if "handler_window_s" in run else None,
            "cpu": meter.cpu,
            "run": run,
        }
        if meter.cost is not None:
            document["write_cost"] = meter.cost
        results.record("ours", document)

    async def latency(self, results: Results, round_: int, backend: str) -> None:
        progress(f"round {round_}: ours latency {backend}")
        for measurement, document in (
            (f"latency_ahead_{backend}", await latency(self.bench, backend, "parent")),
            (f"latency_due_now_{backend}", await latency_due_now(self.bench, backend)),
        ):
            late = document["latency_ms"]
            results.record(
                "ours",
                {
                    "bench": "side_by_side",
                    "round": round_,
                    "who": "ours",
                    "measurement": measurement,
                    "backend": backend,
                    "n": document["params"]["commands"],
                    "p50_ms": late.get("p50"),
                    "p99_ms": late.get("p99"),
                    "latency_ms": late,
                    "started": document["started"],
                    "params": document["params"],
                    **{
                        part: document[part]
                        for part in ("schedule_call_ms", "latency_after_schedule_returned_ms")
                        if part in document
                    },
                },
            )


class DrainCost:
    """``scheduler_sql.DrainMeter``: CPU of the workers, this process and the database during a drain, and on
    PostgreSQL its row versions, index entries and WAL bytes.

    A worker's CPU counts from the moment it logged its start (its imports and start-up left out), so with several
    processes each one counts from its own start. This process and the database's backends count from just before
    the workers are spawned (backends that appear later count from zero: the workers' connections).
    """

    def __init__(self, backend: str, count: int) -> None:
        self.backend = backend
        self.count = count
        self.probe: PgProbe | None = None
        self.idle_backends: set[int] = set()
        self.before: dict[str, Any] = {"server_cpu": {}}
        self.bench_cpu_before = 0.0
        self.workers_before: dict[int, float] = {}
        self.cpu: dict[str, Any] = {"missing": "the drain did not complete"}
        self.cost: dict[str, Any] | None = None

    async def before_start(self, url: str) -> None:
        if self.backend == "postgresql":
            self.probe = PgProbe(libpq(url))
            self.idle_backends = set(self.probe.backends())
            settled = await asyncio.to_thread(self.probe.settle, "scheduled_commands", self.count)
            self.before = self.probe.snapshot() | {"settled": settled}
        self.bench_cpu_before = time.process_time()

    def worker_started(self, pid: int) -> None:
        self.workers_before |= processes_cpu_s([pid])

    async def completed(self, pids: list[int]) -> None:
        workers = cpu_delta(self.workers_before, processes_cpu_s(pids))
        bench = time.process_time() - self.bench_cpu_before
        server = (
            cpu_delta(self.before["server_cpu"], self.probe.snapshot(stats=False)["server_cpu"]) if self.probe else None
        )
        self.cpu = cpu_fields(self.count, worker_cpu_s=workers, bench_cpu_s=bench, server_cpu_s=server)
        self.cpu["interval"] = "until the parent saw every entry COMPLETED, from each worker's logged start (workers) "
        self.cpu["interval"] += "or just before spawning them (this process, the database's backends)"

    async def stopped(self) -> None:
        if self.probe is None:
            return
        try:
            for _ in range(200):  # at most 10 s for the workers' backends to exit (and flush their counters)
                if not set(self.probe.backends()) - self.idle_backends:
                    break
                await asyncio.sleep(0.05)
            after = self.probe.snapshot()
            self.cost = write_cost(self.before, after, self.count) | {
                "interval": "before the workers started until they exited",
                "settled": self.before["settled"],
            }
        finally:
            self.probe.close()
