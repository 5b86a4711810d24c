"""Workflows (issue #19): how fast a fan-in releases its callback, and what a dependant costs its parent's outcome.

Run with ``.venv/bin/python bench/workflows.py [--stores memory,sqlite,postgresql,redis] [--members 10000]`` (never
part of ``make test``). Prints one JSON line per measurement to stdout, progress to stderr. Store-level, one process,
no handlers: what is measured is the store's share.

- ``fan_in``: a group of ``--members`` members and a callback (``add_dependants``); every member but the last is
  claimed and completed; then, ``--rounds`` times on fresh groups, the time from calling ``complete()`` of the last
  member to the callback being claimed by a second store instance on the same database that was woken by the
  release (PostgreSQL: its NOTIFY; SQLite: the commit watcher; Redis: its pub/sub; memory: the same instance). Also
  the time until ``complete()`` returned (the outcome and the release committed together).
- ``chain_step``: ``complete()`` of a parent without a dependant (A), of a parent with one WAITING dependant added
  before it was claimed (B) and of one whose dependant was added after its claim (L), interleaved, ``--steps``
  each; median and p95 in ms, and on PostgreSQL the round trips of each ``complete()`` counted on the wire (libpq's
  trace of the store's pooled connections, ``tests/support/pg_round_trips.py``). On PostgreSQL A is one autocommit
  statement; B is one too, which also releases the dependant; L is A's statement (which leaves the parent out, as it
  has a dependant by then) and then B's.
- ``outcomes_without_dependants``: ``--outcomes`` claimed entries without dependants completed at once (the group
  commit batches them), ``--rounds`` times: outcomes per second, and the round trips on PostgreSQL.
- ``cancel_step``: ``dead_letter()`` of a parent without a dependant (C) and of a parent whose one WAITING dependant
  it cancels (D): the cancellation, and the read of the cancelled entry for the store's listener, in the same
  transaction.

- ``plain_batch`` (Redis only): a batch of 100 ``complete()`` of entries without dependants (one script run), on a
  prefix that never held a dependant (E: the resolution stops at one ``HGET``) and on one that did (F: one lookup of
  dependants per finished entry), interleaved, ``--steps`` batches each: what workflows cost everything else.

Every ``bench_*`` database created is dropped; SQLite files live in a temporary directory; Redis (``--redis``) runs
under a key prefix of its own (``bench_workflows_{pid}``), whose keys are deleted at the end (never FLUSHDB).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from pg_round_trips import RoundTrips
from scheduler_sql import DEFAULT_POSTGRES_URL, POSTGRES_ENV, Postgres

from stores import MemoryStore, RedisStore, ScheduledCommandStore, SqlStore
from stores.dependencies import Dependency
from stores.entries import AttemptRecord, ScheduledCommandEntry, ScheduledCommandStatus

LEASE = dt.timedelta(minutes=5)


def progress(message: str) -> None:
    print(f"[{dt.datetime.now(dt.UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def entry(now: dt.datetime, n: int = 0) -> ScheduledCommandEntry:
    return ScheduledCommandEntry(
        id=str(uuid.uuid4()),
        command_type="bench.workflows.Job",
        payload=f'{{"n": {n}}}',
        status=ScheduledCommandStatus.PENDING,
        scheduled_for=now,
        created_at=now,
    )


def attempt(now: dt.datetime) -> AttemptRecord:
    return AttemptRecord(attempt=1, worker_id="bench", started_at=now, finished_at=now, outcome="completed")


async def complete_all(store: ScheduledCommandStore, claimed: list[ScheduledCommandEntry], now: dt.datetime) -> None:
    await asyncio.gather(
        *(
            store.complete(e.id, e.lease_token or "", result_payload=str(e.id[:4]), attempt=attempt(now))
            for e in claimed
        )
    )


async def fan_in_round(store: ScheduledCommandStore, other: ScheduledCommandStore, members: int) -> dict[str, float]:
    now = dt.datetime.now(dt.UTC)
    group = [entry(now, n) for n in range(members)]
    callback = entry(now)
    await store.add_dependants([*group, callback], {callback.id: Dependency(tuple(e.id for e in group), False)})
    last: ScheduledCommandEntry | None = None
    while True:  # every member but the last: claimed and completed in batches
        claimed = await store.claim_due(now=now, limit=500, worker_id="bench", lease_duration=LEASE)
        if not claimed:
            break
        if last is None:
            last, claimed = claimed[0], claimed[1:]
        await complete_all(store, claimed, now)
    assert last is not None and last.lease_token is not None
    waiting = await store.get(callback.id)
    assert waiting is not None and waiting.status is ScheduledCommandStatus.WAITING and waiting.pending_parents == 1
    woken = asyncio.Event()
    listener = lambda _due: woken.set()  # noqa: E731 - a one-line listener
    other.add_wakeup_listener(listener)
    await asyncio.sleep(0.2)  # the second store is listening
    woken.clear()
    started = time.perf_counter()
    assert await store.complete(last.id, last.lease_token, result_payload="1", attempt=attempt(now))
    committed = time.perf_counter()
    await asyncio.wait_for(woken.wait(), 10)
    heard = time.perf_counter()
    got = await other.claim_due(now=dt.datetime.now(dt.UTC), limit=10, worker_id="other", lease_duration=LEASE)
    claimed_at = time.perf_counter()
    other.remove_wakeup_listener(listener)
    assert [e.id for e in got] == [callback.id], got
    return {
        "complete_ms": (committed - started) * 1000,
        "woken_ms": (heard - started) * 1000,
        "claimed_ms": (claimed_at - started) * 1000,
    }


async def chain_steps(store: ScheduledCommandStore, steps: int) -> dict[str, list[float]]:
    """``complete()`` of a parent without a dependant (A), with one WAITING dependant added before it was claimed (B),
    and with one added after (L), interleaved: times in ms, and on PostgreSQL the round trips (``trips_*``)."""
    trips = RoundTrips(store) if isinstance(store, SqlStore) and store.is_postgresql else None
    times: dict[str, list[float]] = {key: [] for key in ("A", "B", "L", "trips_A", "trips_B", "trips_L")}
    with trips or contextlib.nullcontext():
        for _ in range(steps):
            for variant in ("A", "B", "L"):
                now = dt.datetime.now(dt.UTC)
                parent = entry(now)
                await store.add([parent])
                child = entry(now)
                if variant == "B":
                    await store.add_dependants([child], {child.id: Dependency((parent.id,))})
                (claimed,) = await store.claim_due(now=now, limit=1, worker_id="bench", lease_duration=LEASE)
                assert claimed.id == parent.id and claimed.lease_token is not None
                if variant == "L":
                    await store.add_dependants([child], {child.id: Dependency((parent.id,))})
                if trips is not None:
                    trips.reset()
                started = time.perf_counter()
                assert await store.complete(parent.id, claimed.lease_token, result_payload="1", attempt=attempt(now))
                times[variant].append((time.perf_counter() - started) * 1000)
                if trips is not None:
                    times[f"trips_{variant}"].append(trips.count())
                if variant != "A":  # released, and out of the next claims' way
                    (released,) = await store.claim_due(now=now, limit=1, worker_id="bench", lease_duration=LEASE)
                    assert released.id == child.id
                    await store.complete(
                        released.id, released.lease_token or "", result_payload=None, attempt=attempt(now)
                    )
    return times


async def outcome_throughput(store: ScheduledCommandStore, count: int) -> dict[str, float]:
    """``count`` entries without dependants claimed, then completed all at once (the group commit batches them):
    outcomes per second, and on PostgreSQL the round trips they took."""
    now = dt.datetime.now(dt.UTC)
    await store.add([entry(now, n) for n in range(count)])
    claimed: list[ScheduledCommandEntry] = []
    while len(claimed) < count:
        claimed += await store.claim_due(now=now, limit=500, worker_id="bench", lease_duration=LEASE)
    trips = RoundTrips(store) if isinstance(store, SqlStore) and store.is_postgresql else None
    with trips or contextlib.nullcontext():
        started = time.perf_counter()
        await complete_all(store, claimed, now)
        elapsed = time.perf_counter() - started
        used = trips.count() if trips is not None else None
    return {"per_s": round(count / elapsed), **({"round_trips": used} if used is not None else {})}


async def cancel_steps(store: ScheduledCommandStore, steps: int) -> dict[str, list[float]]:
    """``dead_letter()`` of a parent without a dependant (C) and of a parent whose one WAITING dependant it cancels
    (D), which the store reads in the same transaction and reports to its listener (the scheduler's announcement)."""
    heard: list[str] = []
    store.set_dependants_cancelled_listener("bench", lambda entries: heard.extend(e.id for e in entries))
    times: dict[str, list[float]] = {"C": [], "D": []}
    for _ in range(steps):
        for variant in ("C", "D"):
            now = dt.datetime.now(dt.UTC)
            parent = entry(now)
            await store.add([parent])
            if variant == "D":
                child = entry(now)
                await store.add_dependants([child], {child.id: Dependency((parent.id,))})
            (claimed,) = await store.claim_due(now=now, limit=1, worker_id="bench", lease_duration=LEASE)
            assert claimed.id == parent.id and claimed.lease_token is not None
            failed = AttemptRecord(attempt=1, started_at=now, finished_at=now, outcome="failed", worker_id="bench")
            started = time.perf_counter()
            assert await store.dead_letter(parent.id, claimed.lease_token, error_message="E: x", attempt=failed)
            times[variant].append((time.perf_counter() - started) * 1000)
            if variant == "D":
                assert heard[-1:] == [child.id]
    store.set_dependants_cancelled_listener("bench", None)
    return times


async def plain_batches(
    store: ScheduledCommandStore, other: ScheduledCommandStore, steps: int
) -> dict[str, list[float]]:
    """``plain_batch``: ``store`` never held a dependant, ``other`` did (one, scheduled here first)."""
    now = dt.datetime.now(dt.UTC)
    parent, child = entry(now), entry(now)
    await other.add([parent])
    await other.add_dependants([child], {child.id: Dependency((parent.id,), False)})
    await other.cancel(child.id, now=now)
    times: dict[str, list[float]] = {"E": [], "F": []}
    for _ in range(steps):
        for variant, target in (("E", store), ("F", other)):
            now = dt.datetime.now(dt.UTC)
            await target.add([entry(now, n) for n in range(100)])
            claimed = await target.claim_due(now=now, limit=100, worker_id="bench", lease_duration=LEASE)
            claimed = [e for e in claimed if e.id != parent.id]
            started = time.perf_counter()
            await complete_all(target, claimed, now)
            times[variant].append((time.perf_counter() - started) * 1000)
    return times


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 3),
        "p95": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
        "max": round(ordered[-1], 3),
    }


async def measure(kind: str, url: str | None, args: argparse.Namespace) -> list[dict[str, Any]]:
    def open_store() -> ScheduledCommandStore:
        if url is None:
            return MemoryStore()
        return RedisStore(url, prefix=args.redis_prefix) if kind == "redis" else SqlStore(url)

    store = open_store()
    other = store if url is None else open_store()
    results: list[dict[str, Any]] = []
    async with store:
        if other is not store:
            await other.open()
        try:
            rounds = [await fan_in_round(store, other, args.members) for _ in range(args.rounds)]
            progress(f"{kind}: fan-in of {args.members} measured")
            results.append(
                {
                    "bench": "workflows.fan_in",
                    "store": kind,
                    "members": args.members,
                    "rounds": args.rounds,
                    **{key: summary([r[key] for r in rounds]) for key in rounds[0]},
                }
            )
            times = await chain_steps(store, args.steps)
            progress(f"{kind}: chain steps measured")
            chain: dict[str, Any] = {
                "bench": "workflows.chain_step",
                "store": kind,
                "steps": args.steps,
                "complete_without_dependant_ms": summary(times["A"]),
                "complete_with_dependant_ms": summary(times["B"]),
                "complete_with_dependant_added_after_claim_ms": summary(times["L"]),
            }
            if times["trips_A"]:
                chain["round_trips"] = {
                    name: summary(times[f"trips_{key}"])
                    for key, name in (("A", "without"), ("B", "with"), ("L", "with_added_after_claim"))
                }
            results.append(chain)
            rounds = [await outcome_throughput(store, args.outcomes) for _ in range(args.rounds)]
            progress(f"{kind}: outcome throughput measured")
            results.append(
                {
                    "bench": "workflows.outcomes_without_dependants",
                    "store": kind,
                    "entries": args.outcomes,
                    "per_s": [r["per_s"] for r in rounds],
                    **({"round_trips": [r["round_trips"] for r in rounds]} if "round_trips" in rounds[0] else {}),
                }
            )
            times = await cancel_steps(store, args.steps)
            progress(f"{kind}: cancel steps measured")
            results.append(
                {
                    "bench": "workflows.cancel_step",
                    "store": kind,
                    "steps": args.steps,
                    "dead_letter_without_dependant_ms": summary(times["C"]),
                    "dead_letter_cancelling_one_dependant_ms": summary(times["D"]),
                }
            )
            if kind == "redis":
                plain = RedisStore(url or "", prefix=f"{args.redis_prefix}-plain")
                async with plain:
                    times = await plain_batches(plain, store, args.steps)
                progress(f"{kind}: plain batches measured")
                results.append(
                    {
                        "bench": "workflows.plain_batch",
                        "store": kind,
                        "steps": args.steps,
                        "batch_of_100_never_a_dependant_ms": summary(times["E"]),
                        "batch_of_100_with_workflows_ms": summary(times["F"]),
                    }
                )
        finally:
            if other is not store:
                await other.close()
    return results


def delete_keys(url: str, prefix: str) -> None:
    """Delete the benchmark's keys (SCAN, never FLUSHDB: the server may be shared)."""
    import redis

    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.unlink(*keys[start : start + 1000])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", default="memory,sqlite,postgresql")
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--outcomes", type=int, default=2000, help="entries completed at once (throughput)")
    parser.add_argument("--database", default=f"bench_workflows_{os.getpid()}", help="PostgreSQL database (dropped)")
    parser.add_argument("--postgres", default=os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES_URL))
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    args.redis_prefix = f"bench_workflows_{os.getpid()}"
    postgres = Postgres(args.postgres)
    for kind in args.stores.split(","):
        if kind == "memory":
            results = asyncio.run(measure(kind, None, args))
        elif kind == "sqlite":
            with tempfile.TemporaryDirectory() as directory:
                results = asyncio.run(measure(kind, f"sqlite:///{Path(directory) / 'bench.db'}", args))
        elif kind == "redis":
            try:
                results = asyncio.run(measure(kind, args.redis, args))
            finally:
                delete_keys(args.redis, f"{args.redis_prefix}:")
                delete_keys(args.redis, f"{args.redis_prefix}-plain:")
        else:
            name = args.database
            try:
                results = asyncio.run(measure(kind, postgres.create(name), args))
            finally:
                postgres.drop(name)
        for result in results:
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
