"""Our workloads and the peers' benchmark harness (pgqueuer, huey) interleaved in one run, with the ratios.

Run with ``.venv/bin/python bench/side_by_side.py --peers DIR [--n 10000] [--rounds 3] [--quick]`` where ``DIR`` is a
writable copy of the peers' harness with its virtualenv installed in ``DIR/.venv`` (see docs/performance.md). Never
part of ``make test``. Each round runs every workload once, ours and the peers' alternating, the order rotated from
round to round, so drift of a shared machine spreads over everyone. Prints one JSON line per measurement
(``"bench": "side_by_side"``) and, at the end, one line of medians and ratios ours / peer per row
(``"bench": "side_by_side_ratios"``). Progress goes to stderr.

Rows (N commands, no-op handlers on both sides):

- ``schedule_single_{postgresql,sqlite}``: ``schedule()`` one at a time against pgqueuer's / huey's single enqueue.
- ``schedule_concurrent_100_{postgresql,sqlite}``: 100 coroutines calling ``schedule()`` at once (ours only).
- ``schedule_many_postgresql``: one ``schedule_many()`` of N against pgqueuer's batch enqueue of N.
- ``drain_default_*``: one worker process at default settings against the peer's default worker (in-process).
- ``drain_best_*``: ours 2 processes x concurrency 200 (PostgreSQL) / 1 process x concurrency 100 (SQLite), against
  the same peer runs (the peers' default worker is also their fastest here).
- ``latency_ahead_*``: due-to-start p50 / p99 of commands scheduled ahead over 10 s, against the peers' w2.
- ``latency_due_now_*``: commands due the moment another process schedules them (ours only).

Every database created is dropped at the end (``bench_*`` for ours; the peers' ``bench_pgqueuer`` unless it existed
before); SQLite files live in a temporary folder that is removed. 127.0.0.1 only; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg
from _meter import COUNTED, PgProbe, cpu_delta, write_cost
from _side_by_side_ours import OursRunner
from psycopg import sql
from scheduler_sql import DEFAULT_POSTGRES_URL, POSTGRES_ENV, Bench, Config, Postgres, progress

BENCH_DIR = Path(__file__).resolve().parent
#: pgqueuer's database: the harness's default name, or ``BENCH_PGQUEUER_DB`` (passed on to the harness, whose copy
#: must read it) so that two runs on one server do not share, clear and drop one database.
PGQUEUER_DB = os.environ.get("BENCH_PGQUEUER_DB", "bench_pgqueuer")
MARKS_ENV = "SIDE_BY_SIDE_MARKS"


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    ours: str  # measurement name on our side
    peer: str | None  # "<peer>:<measurement>", or None when only ours is measured
    unit: str  # "per_s" (higher is better) or "ms" (lower is better)


ROWS = (
    Row("schedule_single_postgresql", "schedule_single_postgresql", "pgqueuer:enqueue_single", "per_s"),
    Row("schedule_single_sqlite", "schedule_single_sqlite", "huey-sqlite:enqueue_single", "per_s"),
    Row("schedule_concurrent_100_postgresql", "schedule_concurrent_100_postgresql", None, "per_s"),
    Row("schedule_concurrent_100_sqlite", "schedule_concurrent_100_sqlite", None, "per_s"),
    Row("schedule_many_postgresql", "schedule_many_postgresql", "pgqueuer:enqueue_batch", "per_s"),
    Row("drain_default_postgresql", "drain_default_postgresql", "pgqueuer:drain", "per_s"),
    Row("drain_default_sqlite", "drain_default_sqlite", "huey-sqlite:drain", "per_s"),
    Row("drain_best_postgresql", "drain_best_postgresql", "pgqueuer:drain", "per_s"),
    Row("drain_best_sqlite", "drain_best_sqlite", "huey-sqlite:drain", "per_s"),
    Row("latency_ahead_postgresql_p50", "latency_ahead_postgresql:p50", "pgqueuer:latency:p50", "ms"),
    Row("latency_ahead_postgresql_p99", "latency_ahead_postgresql:p99", "pgqueuer:latency:p99", "ms"),
    Row("latency_ahead_sqlite_p50", "latency_ahead_sqlite:p50", "huey-sqlite:latency:p50", "ms"),
    Row("latency_ahead_sqlite_p99", "latency_ahead_sqlite:p99", "huey-sqlite:latency:p99", "ms"),
    Row("latency_due_now_postgresql_p50", "latency_due_now_postgresql:p50", None, "ms"),
    Row("latency_due_now_postgresql_p99", "latency_due_now_postgresql:p99", None, "ms"),
    Row("latency_due_now_sqlite_p50", "latency_due_now_sqlite:p50", None, "ms"),
    Row("latency_due_now_sqlite_p99", "latency_due_now_sqlite:p99", None, "ms"),
)


def emit(document: dict[str, Any]) -> None:
    print(json.dumps(document), flush=True)


class Results:
    """Every measurement line, kept to compute the medians at the end."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = defaultdict(list)
        self.cpu: dict[str, list[float]] = defaultdict(list)
        self.failures: list[dict[str, Any]] = []

    def failed(self, round_: int, error: str) -> None:
        progress(f"round {round_}: FAILED {error}")
        self.failures.append({"round": round_, "error": error[-2000:]})
        emit({"bench": "side_by_side_failure", "round": round_, "error": error[-2000:]})

    def record(self, who: str, line: dict[str, Any]) -> None:
        emit(line)
        key = line["measurement"] if who == "ours" else f"{who}:{line['measurement']}"
        if "per_s" in line and line["per_s"] is not None:
            self.values[key].append(line["per_s"])
        for name in ("p50", "p99"):
            if line.get(f"{name}_ms") is not None:
                self.values[f"{key}:{name}"].append(line[f"{name}_ms"])
        total = line.get("cpu", {}).get("total_us_per_command")
        if total is not None:
            self.cpu[key].append(total)

    def ratios(self, params: dict[str, Any]) -> dict[str, Any]:
        rows: dict[str, Any] = {}
        for row in ROWS:
            ours = self._median(self.values, row.ours)
            entry: dict[str, Any] = {"unit": row.unit, "better": "higher" if row.unit == "per_s" else "lower"}
            entry |= {"ours": ours, "ours_samples": self.values.get(row.ours, [])}
            entry["ours_cpu_us_per_command"] = self._median(self.cpu, row.ours)
            if row.peer is not None:
                peer = self._median(self.values, row.peer)
                entry |= {"peer": row.peer, "peer_value": peer, "peer_samples": self.values.get(row.peer, [])}
                entry["peer_cpu_us_per_command"] = self._median(self.cpu, row.peer)
                entry["ratio_ours_over_peer"] = round(ours / peer, 3) if ours is not None and peer else None
            rows[row.name] = entry
        return {
            "bench": "side_by_side_ratios",
            "params": params,
            "statistic": "median over rounds",
            "ratio": "ours / peer: above 1 is better for rates (per_s), below 1 is better for latencies (ms)",
            "rows": rows,
            "failures": self.failures,
        }

    @staticmethod
    def _median(values: dict[str, list[float]], key: str) -> float | None:
        found = values.get(key)
        return round(statistics.median(found), 3) if found else None


# -- the peers' harness --------------------------------------------------------------------------------------------


class Peers:
    """The peers' harness in ``folder``, run with its own interpreter through ``_peer_shim.py``."""

    def __init__(self, folder: Path, postgres: Postgres, tmp: Path, n: int, timeout_s: float, quick: bool) -> None:
        self.folder = folder.resolve()
        self.python = self.folder / ".venv" / "bin" / "python"
        for needed in (self.python, self.folder / "pgqueuer_bench.py", self.folder / "huey_bench.py"):
            if not needed.exists():
                raise SystemExit(f"--peers {folder}: {needed} is missing (see docs/performance.md for the set-up)")
        self.postgres = postgres
        self.tmp = tmp
        self.n = n
        self.timeout_s = timeout_s
        self.latency_args = ["--n", "20", "--spread", "1", "--lead", "0.5"] if quick else []
        self.base_dsn = postgres.admin.rsplit("/", 1)[0]
        self.created_pgqueuer_db = not self._database_exists(PGQUEUER_DB)

    def _database_exists(self, name: str) -> bool:
        with psycopg.connect(self.postgres.admin, autocommit=True, connect_timeout=5) as conn:
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None

    def drop_created(self) -> None:
        if self.created_pgqueuer_db:
            with psycopg.connect(self.postgres.admin, autocommit=True, connect_timeout=5) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(PGQUEUER_DB)))

    async def run(self, script: str, args: list[str]) -> tuple[dict[str, Any], list[dict[str, Any]], float]:
        """The script's JSON line, the shim's marks and the whole process's CPU seconds (its rusage)."""
        marks = self.tmp / f"marks-{script}-{time.monotonic_ns()}.jsonl"
        env = os.environ | {"BENCH_PG": self.base_dsn, "TMPDIR": str(self.tmp), MARKS_ENV: str(marks)}
        env.pop("BENCH_RESULTS", None)
        command = [str(self.python), str(BENCH_DIR / "_peer_shim.py"), str(self.folder), script, *args]
        command += ["--timeout", str(self.timeout_s)]
        result = await asyncio.to_thread(_run_with_rusage, command, env, self.folder, self.timeout_s + 120)
        stdout, stderr, code, cpu_s = result
        lines = [line for line in stdout.splitlines() if line.startswith("{")]
        if code != 0 or not lines:
            raise RuntimeError(f"{script} {' '.join(args)} exited with {code}: {stderr[-2000:]}")
        found = [json.loads(line) for line in marks.read_text().splitlines()] if marks.exists() else []
        marks.unlink(missing_ok=True)
        return json.loads(lines[-1]), found, cpu_s

    async def throughput(self, results: Results, round_: int, peer: str) -> None:
        script = {"pgqueuer": "pgqueuer_bench", "huey-sqlite": "huey_bench"}[peer]
        backend = "postgresql" if peer == "pgqueuer" else "sqlite"
        progress(f"round {round_}: {peer} w1")
        line, marks, process_cpu = await self.run(script, ["w1", "--n", str(self.n)])
        by_name = {mark["mark"]: mark for mark in marks}
        cost = None
        if backend == "postgresql" and "drain_start" in by_name:
            probe = PgProbe(f"{self.base_dsn}/{PGQUEUER_DB}")
            try:
                await asyncio.to_thread(probe.wait_backends_gone)
                after = await asyncio.to_thread(probe.snapshot)
            finally:
                probe.close()
            cost = write_cost(by_name["drain_start"], after, self.n) | {
                "interval": "drain start to process exit",
                "settled": by_name["drain_start"].get("settled"),
            }
        phases = {
            "enqueue_single": ("single", line["n_single"], line["enqueue_single_per_s"]),
            "enqueue_batch": ("batch", line["n"], line["enqueue_batch_per_s"]),
            "drain": ("drain", line["n"], line["drain_acked_per_s"]),
        }
        for measurement, (phase, count, per_s) in phases.items():
            start, end = by_name.get(f"{phase}_start"), by_name.get(f"{phase}_end")
            document: dict[str, Any] = {
                "bench": "side_by_side",
                "round": round_,
                "who": peer,
                "measurement": measurement,
                "backend": backend,
                "n": count,
                "per_s": per_s,
                "cpu": _peer_cpu(start, end, count, backend),
            }
            if measurement == "drain":
                document |= {"drain_exec_per_s": line["drain_exec_per_s"], "clock": "drain_acked (store empty)"}
                if cost is not None:
                    document["write_cost"] = cost
            results.record(peer, document)
        emit({"bench": "side_by_side_peer_raw", "round": round_, "who": peer, "process_cpu_s": process_cpu} | line)

    async def latency(self, results: Results, round_: int, peer: str) -> None:
        script = {"pgqueuer": "pgqueuer_bench", "huey-sqlite": "huey_bench"}[peer]
        progress(f"round {round_}: {peer} w2")
        line, _, _ = await self.run(script, ["w2", *self.latency_args])
        results.record(
            peer,
            {
                "bench": "side_by_side",
                "round": round_,
                "who": peer,
                "measurement": "latency",
                "backend": "postgresql" if peer == "pgqueuer" else "sqlite",
                "n": line["n"],
                "p50_ms": line["p50_ms"],
                "p99_ms": line["p99_ms"],
                "latency_ms": {k: line[k] for k in ("min_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms")},
                "scheduled_before_first_due_s": line["scheduled_before_first_due_s"],
            },
        )


def _peer_cpu(start: dict[str, Any] | None, end: dict[str, Any] | None, count: int, backend: str) -> dict[str, Any]:
    if start is None or end is None:
        return {"missing": "the shim found no mark for this phase (the harness changed?)"}
    process = round(end["cpu_s"] - start["cpu_s"], 3)
    cpu: dict[str, Any] = {
        "process_cpu_s": process,
        "process_us_per_command": round(process / count * 1e6, 1),
        "counted": {"process_cpu_s": "the peer's benchmark process (its in-process worker included)"},
    }
    total = process
    if backend == "postgresql":
        server = cpu_delta(_pids(start["server_cpu"]), _pids(end["server_cpu"]))
        cpu |= {"server_cpu_s": server, "server_us_per_command": round(server / count * 1e6, 1)}
        cpu["counted"]["server_cpu_s"] = COUNTED["server_cpu_s"]
        total += server
    cpu["total_us_per_command"] = round(total / count * 1e6, 1)
    return cpu


def _pids(readings: dict[str, float]) -> dict[int, float]:
    return {int(pid): cpu for pid, cpu in readings.items()}


def _run_with_rusage(command: list[str], env: dict[str, str], cwd: Path, limit_s: float) -> tuple[str, str, int, float]:
    """Run ``command`` to its end (killed after ``limit_s``): stdout, stderr, exit code and its CPU seconds."""
    import subprocess

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=out, stderr=err)
        deadline = time.monotonic() + limit_s
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.05)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (
            out.read().decode(),
            err.read().decode(errors="replace"),
            process.returncode,
            round(usage.ru_utime + usage.ru_stime, 3),
        )


# -- main ----------------------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, postgres: Postgres, tmp: Path) -> None:
    n = args.n
    quick = args.quick
    config = Config(
        drain_commands=n,
        drain_repeats=1,
        drain_timeout_s=args.timeout,
        latency_commands=20 if quick else 200,
        latency_spread_s=1.0 if quick else 10.0,
        latency_lead_s=0.5 if quick else 1.5,
        latency_now_commands=20 if quick else 300,
    )
    bench = Bench(config, postgres, tmp, None)
    ours = OursRunner(bench, n)
    peers = Peers(args.peers, postgres, tmp, n, args.timeout, quick)
    results = Results()
    named_blocks: list[tuple[str, Any]] = [
        ("schedule:postgresql", lambda r: ours.schedule(results, r, "postgresql")),
        ("schedule:pgqueuer", lambda r: peers.throughput(results, r, "pgqueuer")),
        ("schedule:sqlite", lambda r: ours.schedule(results, r, "sqlite")),
        ("schedule:huey-sqlite", lambda r: peers.throughput(results, r, "huey-sqlite")),
        ("drain_default:postgresql", lambda r: ours.drain(results, r, "postgresql", "default")),
        ("drain_default:sqlite", lambda r: ours.drain(results, r, "sqlite", "default")),
        ("drain_best:postgresql", lambda r: ours.drain(results, r, "postgresql", "best")),
        ("drain_best:sqlite", lambda r: ours.drain(results, r, "sqlite", "best")),
        ("latency:pgqueuer", lambda r: peers.latency(results, r, "pgqueuer")),
        ("latency:postgresql", lambda r: ours.latency(results, r, "postgresql")),
        ("latency:huey-sqlite", lambda r: peers.latency(results, r, "huey-sqlite")),
        ("latency:sqlite", lambda r: ours.latency(results, r, "sqlite")),
    ]
    # --only: a subset of the blocks (the peers' throughput run gives both their enqueue and drain figures).
    blocks = [block for name, block in named_blocks if args.only is None or re.search(args.only, name)]
    if not blocks:
        raise SystemExit(f"--only {args.only!r} matches none of {[name for name, _ in named_blocks]}")
    try:
        for round_ in range(1, args.rounds + 1):
            shift = (round_ - 1) * 2 % len(blocks)  # rotate by pairs, so each of ours stays next to its peer
            for block in blocks[shift:] + blocks[:shift]:
                try:
                    await block(round_)
                except (RuntimeError, TimeoutError, OSError, KeyError, psycopg.Error) as error:
                    # One failed workload (a peer's script that exited, a worker that did not start) loses its
                    # own line, not the run: the failure is reported and counted in the final line.
                    results.failed(round_, repr(error))
    finally:
        peers.drop_created()
    emit(
        results.ratios(
            {
                "n": n,
                "rounds": args.rounds,
                "quick": quick,
                "only": args.only,
                "latency_commands": config.latency_commands,
                "latency_spread_s": config.latency_spread_s,
                "peers": {"pgqueuer": "PostgreSQL", "huey-sqlite": "SQLite"},
                "counted": COUNTED,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--peers", type=Path, required=True, help="the peers' harness folder, with DIR/.venv")
    parser.add_argument("--n", type=int, help="commands per throughput workload (default 10,000; 300 with --quick)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a smoke check: small N, one round, short latency runs")
    parser.add_argument("--timeout", type=float, default=240.0, help="cap in seconds on any one wait")
    parser.add_argument(
        "--only", help="regex on block names (e.g. 'schedule', 'drain_default|pgqueuer|huey'): run only those blocks"
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES_URL),
        help=f"a local PostgreSQL URL (default ${POSTGRES_ENV}, then {DEFAULT_POSTGRES_URL})",
    )
    args = parser.parse_args()
    args.n = args.n or (300 if args.quick else 10_000)
    args.rounds = args.rounds or (1 if args.quick else 3)
    if args.n < 100:
        parser.error("--n must be at least 100 (100 concurrent producers share it)")
    postgres = Postgres(args.postgres)
    with tempfile.TemporaryDirectory(prefix="bench-side-by-side-") as tmp:
        asyncio.run(run(args, postgres, Path(tmp)))
    progress("done")


if __name__ == "__main__":
    main()
