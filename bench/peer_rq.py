"""The drain benchmark of ``redis_drain.py`` on RQ: a second Redis peer for the Redis store's figures.

RQ is not a dependency of this project: run this with a Python that has RQ installed, in a throwaway virtualenv
outside the repository (``python -m venv /somewhere/peers && /somewhere/peers/bin/pip install rq arq``), from the
repository root: ``/somewhere/peers/bin/python bench/peer_rq.py --drain-once PROCESSES,COUNT``. It prints one JSON
line: no-op jobs, enqueued beforehand (untimed, ``enqueue_many`` in one pipeline), drained by ``PROCESSES`` worker
processes (RQ's ``SimpleWorker``: jobs run in the worker process, one at a time, without forking a child per job as
RQ's default ``Worker`` does, which would be far slower), in burst mode (each exits when the queue is empty); the
handler window (first job start to last job end, recorded by the workers) and CPU seconds per 1,000 jobs of the
worker processes and of the Redis server. RQ runs one job at a time per process: it has no ``max_jobs``.

Keys: a queue of its own (``bench-rq-{pid}-{run}``), its registries and the bench's own job ids (results are not
kept: ``result_ttl=0``), all deleted afterwards; nothing else on the server is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from redis import Redis
from rq import Queue, SimpleWorker  # type: ignore[import-not-found]

OUT_ENV = "BENCH_RQ_OUT"
_out: Any = None


def noop(n: int) -> None:
    global _out
    started = time.time()
    if _out is None:
        _out = open(os.environ[OUT_ENV], "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the worker
    _out.write(f"{n} {started} {time.time()}\n")


def run_worker(url: str, queue: str, name: str) -> None:
    connection = Redis.from_url(url)
    worker = SimpleWorker([Queue(queue, connection=connection)], connection=connection, name=name)
    worker.work(burst=True, logging_level="ERROR")
    if _out is not None:
        _out.close()


def cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def server_cpu(connection: Redis) -> float:
    info = connection.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def cleanup(connection: Redis, queue: str, tag: str) -> None:
    for pattern in (f"rq:*{queue}*", f"rq:*bench-rq-{tag}-*"):
        keys = list(connection.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 1000):
            connection.delete(*keys[start : start + 1000])
    connection.srem("rq:queues", f"rq:queue:{queue}")
    connection.delete("rq:clean_groups")  # RQ's maintenance lock (it expires on its own): taken by this run's workers


def drain_once(url: str, processes: int, count: int, directory: Path, run: int) -> dict[str, Any]:
    connection = Redis.from_url(url)
    queue_name = f"bench-rq-{os.getpid()}-{run}"
    tag = f"{os.getpid()}-{run}"
    try:
        queue = Queue(queue_name, connection=connection)
        for start in range(0, count, 1000):
            queue.enqueue_many(
                [
                    Queue.prepare_data("peer_rq.noop", args=(n,), job_id=f"bench-rq-{tag}-{n}", result_ttl=0)
                    for n in range(start, min(start + 1000, count))
                ]
            )
        outputs = [directory / f"drain-{run}-{i}.out" for i in range(processes)]
        cpu_before, server_before = cpu_children(), server_cpu(connection)
        here = str(Path(__file__).resolve().parent)
        env_path = os.pathsep.join([here, *filter(None, [os.environ.get("PYTHONPATH")])])
        workers = [
            subprocess.Popen(
                [sys.executable, __file__, "worker", url, queue_name, f"bench-rq-{tag}-worker-{i}"],
                env=os.environ | {OUT_ENV: str(out), "PYTHONPATH": env_path},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i, out in enumerate(outputs)
        ]
        codes = [w.wait(600) for w in workers]
        server = server_cpu(connection) - server_before
        workers_cpu = cpu_children() - cpu_before
        records = [line.split() for out in outputs if out.exists() for line in out.read_text().splitlines()]
        cleanup(connection, queue_name, tag)
    finally:
        connection.close()
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


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        run_worker(sys.argv[2], sys.argv[3], sys.argv[4])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--drain-once", metavar="PROCESSES,COUNT", required=True, help="one drain, as one JSON line")
    args = parser.parse_args()
    processes, count = (int(part) for part in args.drain_once.split(","))
    with tempfile.TemporaryDirectory(prefix="bench-rq-") as tmp:
        result = drain_once(args.redis, processes, count, Path(tmp), 0)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
