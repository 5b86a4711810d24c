"""The Redis store's drain beside the SQLite store's and arq's, interleaved in one run, with medians and ratios.

Run from the repository root with the project's virtualenv and a Python that has arq (a throwaway virtualenv
outside the repository, see ``bench/peer_arq.py``), and RQ for RQ's rows (``bench/peer_rq.py``)::

    .venv/bin/python bench/redis_drain.py --arq-python /somewhere/peers/bin/python \
        [--rq-python /somewhere/peers/bin/python] [--baseline /tmp/export-of-main] [--n 10000] [--rounds 3]

``--baseline DIR`` adds the Redis store's drain with worker processes running another export of the project (``git
archive``), in the same rounds: an A/B of a change (the entries are scheduled by this tree; the key layout must be
the same). RQ runs one job at a time per process (``SimpleWorker``, no fork per job) and drains ``--rq-n`` jobs
(default 1,000: it is about ten times slower); it has no row at concurrency 100.
``--started``: our workers start first and the commands are scheduled (one ``schedule_many()``) once every worker
has logged its start, so that no process's start-up (a CPU second or more each) overlaps the drain measured; the
peers' drains are unchanged (their workers start after their jobs are enqueued).

Each round drains N no-op commands once per row and system, the order of the systems rotated from round to round
so that the drift of a shared machine spreads over all of them. Rows: one worker process at concurrency 10 (arq
``max_jobs=10``); several processes at concurrency 10 (SQLite 2, Redis and arq 4); one process at concurrency 100.
Ours: ``scheduler_sql.drain_once`` (the first handler start until every entry is seen COMPLETED); arq:
``peer_arq.py --drain-once`` (its handler window, which favours arq slightly). Prints one JSON line per drain
(``"bench": "redis_drain"``) and a last line of medians, CPU seconds per 1,000 commands (worker processes, and
the Redis server) and the ratios Redis / SQLite and Redis / arq per row (``"bench": "redis_drain_summary"``).
Never part of ``make test``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scheduler_sql  # the bench folder is not a package: found through the path above

ROWS = {  # row -> system -> (processes, concurrency); a system missing from a row has no such setting
    "1 process, concurrency 10": {
        "sqlite": (1, 10),
        "redis": (1, 10),
        "redis-baseline": (1, 10),
        "arq": (1, 10),
        "rq": (1, 1),
    },
    "several processes, concurrency 10": {
        "sqlite": (2, 10),
        "redis": (4, 10),
        "redis-baseline": (4, 10),
        "arq": (4, 10),
        "rq": (4, 1),
    },
    "1 process, concurrency 100": {"sqlite": (1, 100), "redis": (1, 100), "redis-baseline": (1, 100), "arq": (1, 100)},
}
SYSTEMS = ("sqlite", "redis", "redis-baseline", "arq", "rq")


async def ours(
    bench: scheduler_sql.Bench,
    backend: str,
    processes: int,
    concurrency: int,
    root: Path = scheduler_sql.ROOT,
    started: bool = False,
) -> dict[str, Any]:
    result = await scheduler_sql.drain_once(
        bench, backend, processes, concurrency, concurrency, root=root, started=started
    )
    n = bench.config.drain_commands
    result["per_s"] = scheduler_sql.rate(n, result["first_start_to_completed_s"]) if not result["timed_out"] else None
    return result


def arq(python: str, url: str, processes: int, max_jobs: int, n: int) -> dict[str, Any]:
    script = Path(__file__).resolve().parent / "peer_arq.py"
    command = [python, str(script), "--redis", url, "--drain-once", f"{processes},{max_jobs},{n}"]
    out = subprocess.run(command, check=True, capture_output=True, text=True, timeout=600).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["per_s"] = result["handler_window_per_s"]
    return result


def rq(python: str, url: str, processes: int, n: int) -> dict[str, Any]:
    script = Path(__file__).resolve().parent / "peer_rq.py"
    command = [python, str(script), "--redis", url, "--drain-once", f"{processes},{n}"]
    out = subprocess.run(command, check=True, capture_output=True, text=True, timeout=900).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["per_s"] = result["handler_window_per_s"]
    return result


async def main_async(args: argparse.Namespace) -> None:
    config = dataclasses.replace(scheduler_sql.Config(), drain_commands=args.n)
    systems_run = tuple(
        system
        for system in SYSTEMS
        if (system != "rq" or args.rq_python)
        and (system != "arq" or args.arq_python)
        and (system != "redis-baseline" or args.baseline)
    )
    samples: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="bench-redis-drain-") as tmp:
        bench = scheduler_sql.Bench(config, None, Path(tmp), None, args.redis)
        for round_number in range(args.rounds):
            shift = round_number % len(systems_run)
            order = systems_run[shift:] + systems_run[:shift]
            for row, systems in ROWS.items():
                for system in order:
                    if system not in systems:
                        continue
                    processes, concurrency = systems[system]
                    scheduler_sql.progress(f"round {round_number + 1}: {system}, {row}")
                    if system == "arq":
                        result = arq(args.arq_python, args.redis, processes, concurrency, args.n)
                    elif system == "rq":
                        result = rq(args.rq_python, args.redis, processes, args.rq_n)
                    elif system == "redis-baseline":
                        result = await ours(bench, "redis", processes, concurrency, args.baseline, args.started)
                    else:
                        result = await ours(bench, system, processes, concurrency, started=args.started)
                    samples[(row, system)].append(result)
                    line = {"bench": "redis_drain", "round": round_number + 1, "row": row, "system": system}
                    line["load_average_1m"] = round(os.getloadavg()[0], 1)
                    print(json.dumps(line | {"processes": processes} | result), flush=True)
    summary: dict[str, Any] = {}
    for row, row_systems in ROWS.items():
        medians = {}
        for system in systems_run:
            if system not in row_systems:
                continue
            runs = samples[(row, system)]
            rates = [r["per_s"] for r in runs if r["per_s"] is not None]
            medians[system] = {
                "per_s": round(statistics.median(rates), 1) if rates else None,
                "worker_cpu_s_per_1000": statistics.median(r["worker_cpu_s_per_1000"] for r in runs),
                "server_cpu_s_per_1000": (
                    statistics.median(r["server_cpu_s_per_1000"] for r in runs) if system != "sqlite" else None
                ),
                "ran_twice": sum(r.get("ran_twice", 0) for r in runs),
            }
        redis_rate = medians["redis"]["per_s"]
        ratios = {
            f"redis_over_{other}": round(redis_rate / medians[other]["per_s"], 2)
            for other in ("sqlite", "redis-baseline", "arq", "rq")
            if redis_rate and other in medians and medians[other]["per_s"]
        }
        summary[row] = medians | ratios
    env = {
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "n": args.n,
        "rq_n": args.rq_n,
        "rounds": args.rounds,
        "started": args.started,
        "load_average": os.getloadavg(),
    }
    print(json.dumps({"bench": "redis_drain_summary", "env": env, "rows": summary}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--arq-python", help="a Python with arq installed (arq's rows are left out without it)")
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rq-python", help="a Python with RQ installed (RQ's rows are left out without it)")
    parser.add_argument("--rq-n", type=int, default=1_000, help="jobs per RQ drain")
    parser.add_argument("--baseline", type=Path, help="another export of the project, drained as redis-baseline")
    parser.add_argument(
        "--started",
        action="store_true",
        help="ours: start the workers first, schedule the commands (one schedule_many) once all have started",
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
