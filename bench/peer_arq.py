"""The drain and enqueue benchmarks of ``scheduler_sql.py``, on arq: a peer for the Redis store's figures.

arq is not a dependency of this project: run this with a Python that has arq installed, in a throwaway virtualenv
outside the repository (``python -m venv /somewhere/arq-venv && /somewhere/arq-venv/bin/pip install arq``), from the
repository root: ``/somewhere/arq-venv/bin/python bench/peer_arq.py [--quick]``. It prints one JSON line per
measurement, shaped like ``scheduler_sql.py``'s:

- ``schedule_rate``: ``enqueue_job()`` one at a time (arq has no batch enqueue).
- ``drain_rate``: no-op jobs, enqueued beforehand (untimed), drained by worker PROCESSES in burst mode (each exits
  when the queue is empty) with ``max_jobs`` jobs at once; the handler window (first job start to last job end,
  recorded by the workers) and CPU seconds per 1,000 jobs of the worker processes and of the Redis server.

Keys: a queue of its own (``bench-arq-{pid}:queue``) and arq's ``arq:job:{id}`` keys for the bench's own job ids
(results are not kept), all deleted afterwards; nothing else on the server is touched.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from arq import Worker, create_pool  # type: ignore[import-not-found]
from arq.connections import RedisSettings  # type: ignore[import-not-found]

OUT_ENV = "BENCH_ARQ_OUT"


async def noop(ctx: dict[str, Any], n: int) -> None:
    started = time.time()
    with open(os.environ[OUT_ENV], "a", encoding="utf-8") as out:  # noqa: ASYNC230 - as the project's bench app does
        out.write(f"{n} {started} {time.time()}\n")


def run_worker(url: str, queue: str, max_jobs: int) -> None:
    worker = Worker(
        functions=[noop],
        redis_settings=RedisSettings.from_dsn(url),
        queue_name=queue,
        burst=True,
        max_jobs=max_jobs,
        keep_result=0,
        poll_delay=0.05,
        handle_signals=False,
    )
    worker.run()


def cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def server_cpu(pool: Any) -> float:
    info = await pool.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def header(bench: str, version: str) -> dict[str, Any]:
    import arq  # type: ignore[import-not-found]

    return {
        "bench": bench,
        "backend": "arq",
        "arq_version": arq.VERSION,
        "redis_version": version,
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
    }


async def enqueue(pool: Any, queue: str, count: int, tag: str) -> tuple[float, list[str]]:
    ids = [f"bench-arq-{tag}-{n}" for n in range(count)]
    start = time.perf_counter()
    for n, job_id in enumerate(ids):
        await pool.enqueue_job("noop", n, _job_id=job_id, _queue_name=queue)
    return time.perf_counter() - start, ids


async def cleanup(pool: Any, queue: str, ids: list[str]) -> None:
    keys = [queue] + [f"arq:{kind}:{job_id}" for job_id in ids for kind in ("job", "result", "retry", "in-progress")]
    for start in range(0, len(keys), 1000):
        await pool.delete(*keys[start : start + 1000])


async def drain_once(url: str, processes: int, max_jobs: int, count: int, directory: Path, run: int) -> dict[str, Any]:
    pool = await create_pool(RedisSettings.from_dsn(url))
    queue = f"bench-arq-{os.getpid()}-{run}:queue"
    tag = f"{os.getpid()}-{run}"
    try:
        _, ids = await enqueue(pool, queue, count, tag)
        outputs = [directory / f"drain-{run}-{i}.out" for i in range(processes)]
        cpu_before, server_before = cpu_children(), await server_cpu(pool)
        workers = [
            subprocess.Popen(  # noqa: ASYNC220 - nothing else runs on this loop meanwhile
                [sys.executable, __file__, "worker", url, queue, str(max_jobs)],
                env=os.environ | {OUT_ENV: str(out)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for out in outputs
        ]
        codes = [await asyncio.to_thread(w.wait, 600) for w in workers]
        server = await server_cpu(pool) - server_before
        workers_cpu = cpu_children() - cpu_before
        records = [line.split() for out in outputs if out.exists() for line in out.read_text().splitlines()]
        await cleanup(pool, queue, ids)
    finally:
        await pool.aclose()
    first = min(float(r[1]) for r in records)
    last = max(float(r[2]) for r in records)
    return {
        "executions": len(records),
        "distinct": len({r[0] for r in records}),
        "exit_codes": codes,
        "handler_window_per_s": round(count / (last - first), 1),
        "worker_cpu_s_per_1000": round(workers_cpu / count * 1000, 4),
        "server_cpu_s_per_1000": round(server / count * 1000, 4),
    }


async def main_async(url: str, quick: bool) -> None:
    count, one, repeats = (1_000, 200, 1) if quick else (20_000, 2_000, 2)
    pool = await create_pool(RedisSettings.from_dsn(url))
    version = (await pool.info("server"))["redis_version"]
    queue = f"bench-arq-{os.getpid()}-enqueue:queue"
    seconds, ids = await enqueue(pool, queue, one, f"{os.getpid()}-enqueue")
    await cleanup(pool, queue, ids)
    await pool.aclose()
    print(json.dumps(header("schedule_rate", version) | {"schedule_per_s": round(one / seconds, 1)}), flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-arq-") as tmp:
        run = 0
        for processes in (1, 4):
            for max_jobs in (10, 100):
                runs = []
                for _ in range(repeats):
                    run += 1
                    runs.append(await drain_once(url, processes, max_jobs, count, Path(tmp), run))
                results.append(
                    {
                        "processes": processes,
                        "settings": {"max_jobs": max_jobs},
                        "handler_window_per_s": statistics.median(r["handler_window_per_s"] for r in runs),
                        "worker_cpu_s_per_1000": statistics.median(r["worker_cpu_s_per_1000"] for r in runs),
                        "server_cpu_s_per_1000": statistics.median(r["server_cpu_s_per_1000"] for r in runs),
                        "runs": runs,
                    }
                )
    params = {"commands": count, "repeats": repeats, "workers": "arq Worker, burst=True, poll_delay=0.05 s"}
    print(json.dumps(header("drain_rate", version) | {"params": params, "results": results}), flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        run_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke check")
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument(
        "--drain-once",
        metavar="PROCESSES,MAX_JOBS,COUNT",
        help="one drain only, its result as one JSON line (for bench/redis_drain.py's interleaved rounds)",
    )
    args = parser.parse_args()
    if args.drain_once:
        processes, max_jobs, count = (int(part) for part in args.drain_once.split(","))
        with tempfile.TemporaryDirectory(prefix="bench-arq-") as tmp:
            result = asyncio.run(drain_once(args.redis, processes, max_jobs, count, Path(tmp), 0))
        print(json.dumps(result), flush=True)
        return
    asyncio.run(main_async(args.redis, args.quick))


if __name__ == "__main__":
    main()
