"""Runs one script of the peers' benchmark harness unchanged, noting CPU time at the edges of its phases.

Started by ``bench/side_by_side.py`` with the PEERS' interpreter (their virtualenv, Python 3.11, psycopg installed):

    <peers>/.venv/bin/python bench/_peer_shim.py <peers> pgqueuer_bench w1 --n 10000

The script's own ``main()`` runs and prints its JSON line as usual; nothing it times changes except for the marks
themselves (well under a millisecond each without a database, about one with PostgreSQL). Around the ``w1``
phases (single enqueue, batch enqueue, drain) the shim wraps the library calls the script makes at those edges and
appends one JSON line per mark to the file named by ``SIDE_BY_SIDE_MARKS``: the wall clock, this process's CPU
(``time.process_time()``: the in-process worker too) and, on PostgreSQL, the CPU of the database's client backends.
Before the drain starts (outside the script's clock) it waits until the enqueues' row counters are flushed to
``pg_stat_user_tables`` and snapshots them with the WAL position, so the parent can count the drain's writes after
the process exits. A script whose calls are not where the shim expects them still runs; marks are then missing.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _meter import PgProbe

MARKS_ENV = "SIDE_BY_SIDE_MARKS"


class Marks:
    def __init__(self) -> None:
        self.path = os.environ.get(MARKS_ENV)
        self.probe: PgProbe | None = None
        self.seen: set[str] = set()

    def mark(self, name: str, *, stats: bool = False, settle: tuple[str, int] | None = None) -> None:
        if name in self.seen:
            return
        self.seen.add(name)
        record: dict[str, Any] = {"mark": name}
        if self.probe is not None:
            if settle:
                record["settled"] = self.probe.settle(*settle)
            record |= self.probe.snapshot(stats=stats)
            record["server_cpu"] = {str(pid): cpu for pid, cpu in record["server_cpu"].items()}
        record |= {"time": time.time(), "cpu_s": time.process_time()}
        if self.path:
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\n")


def patch_pgqueuer(module: Any, marks: Marks, n: int, n_single: int) -> None:
    queries: Any = importlib.import_module("pgqueuer.queries")  # the peers' interpreter has it, ours not
    Queries = queries.Queries

    setup = module.setup_and_reset

    async def setup_and_reset() -> None:
        await setup()
        if marks.probe is None:
            marks.probe = PgProbe(module.bc.pg_dsn(module.DB))

    enqueue = Queries.enqueue

    @functools.wraps(enqueue)
    async def wrapped_enqueue(self: Any, entrypoint: Any, *args: Any, **kwargs: Any) -> Any:
        batch = isinstance(entrypoint, list)
        marks.mark("batch_start" if batch else "single_start")
        result = await enqueue(self, entrypoint, *args, **kwargs)
        if batch:
            marks.mark("batch_end")
        return result

    clear = Queries.clear_queue

    @functools.wraps(clear)
    async def wrapped_clear(self: Any, *args: Any, **kwargs: Any) -> Any:
        if "single_start" in marks.seen:
            marks.mark("single_end")
        return await clear(self, *args, **kwargs)

    make_qm = module.make_qm

    def wrapped_make_qm(conn: Any, on_job: Any) -> Any:
        marks.mark("drain_start", stats=True, settle=("pgqueuer", n + n_single))
        return make_qm(conn, on_job)

    remaining = module.remaining

    async def wrapped_remaining(conn: Any) -> int:
        left: int = await remaining(conn)
        if left == 0 and "drain_start" in marks.seen:
            marks.mark("drain_end")
        return left

    module.setup_and_reset = setup_and_reset
    Queries.enqueue = wrapped_enqueue
    Queries.clear_queue = wrapped_clear
    module.make_qm = wrapped_make_qm
    module.remaining = wrapped_remaining


def patch_huey(module: Any, marks: Marks) -> None:
    huey = module.huey
    enqueue, flush, create_consumer = huey.enqueue, huey.flush, huey.create_consumer
    task_map = module.noop.map

    def wrapped_enqueue(*args: Any, **kwargs: Any) -> Any:
        marks.mark("single_start")
        return enqueue(*args, **kwargs)

    def wrapped_flush() -> Any:
        marks.mark("single_end")
        return flush()

    def wrapped_map(*args: Any, **kwargs: Any) -> Any:
        marks.mark("batch_start")
        result = task_map(*args, **kwargs)
        marks.mark("batch_end")
        return result

    def wrapped_create_consumer(*args: Any, **kwargs: Any) -> Any:
        consumer = create_consumer(*args, **kwargs)
        stop = consumer.stop

        def wrapped_stop(*stop_args: Any, **stop_kwargs: Any) -> Any:
            marks.mark("drain_end")
            return stop(*stop_args, **stop_kwargs)

        consumer.stop = wrapped_stop
        marks.mark("drain_start")
        return consumer

    huey.enqueue, huey.flush, huey.create_consumer = wrapped_enqueue, wrapped_flush, wrapped_create_consumer
    module.noop.map = wrapped_map


def main() -> None:
    peers, script, *rest = sys.argv[1:]
    sys.path.insert(0, peers)
    module = __import__(script)
    marks = Marks()
    if rest[:1] == ["w1"]:
        args = module.bc.base_args(script).parse_args(rest)
        n = module.bc.default_n(args)
        if script == "pgqueuer_bench":
            patch_pgqueuer(module, marks, n, args.n_single or n)
        elif script == "huey_bench":
            patch_huey(module, marks)
    sys.argv = [str(Path(peers) / f"{script}.py"), *rest]
    try:
        module.main()
    finally:
        if marks.probe is not None:
            marks.probe.close()


if __name__ == "__main__":
    main()
