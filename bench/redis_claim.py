"""What one ``RedisStore`` claim costs, by how the PENDING entries spread over queues and command types.

Run from the repository root: ``.venv/bin/python bench/redis_claim.py [--pending 10000] [--claims 200]``. Never part
of ``make test``. For each shape, N PENDING entries due now are added under a key prefix of their own (deleted
afterwards), then claims of 50 (each claimed batch released right after, untimed, so the sets keep their
size) are timed from the caller (one round trip each) with the server's own time of the script (``INFO
commandstats``, ``evalsha``, of the claims no other client's script ran beside). Prints one JSON line: per shape,
the median and p95 caller time and the median server microseconds per claim (a median, since a server preempted on
a shared machine counts the wait as the script's time).

Shapes: one queue and one command type (the plain drain); 50 command types in one queue, claimed by a worker
with handlers for all 50; the same claimed by a worker with handlers for one of them (the others stay PENDING);
4 queues x 50 types, claimed by a worker of all 4 queues and all types.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis  # the repository root is on the path above

from stores import RedisStore
from stores.entries import ScheduledCommandEntry, ScheduledCommandStatus
from stores.queues import Route

NOW = datetime(2030, 1, 1, tzinfo=UTC)
LEASE = timedelta(minutes=5)
LIMIT = 50


def _types(count: int) -> list[str]:
    return [f"bench.Type{n:02d}" for n in range(count)]


SHAPES: dict[str, tuple[list[str], list[str], Route | None]] = {
    "1 queue, 1 type": (["default"], _types(1), None),
    "1 queue, 50 types, route of all 50": (["default"], _types(50), Route.of(["default"], _types(50))),
    "1 queue, 50 types, route of 1": (["default"], _types(50), Route.of(["default"], _types(1))),
    "4 queues x 50 types, route of all": (
        [f"q{n}" for n in range(4)],
        _types(50),
        Route.of([f"q{n}" for n in range(4)], _types(50)),
    ),
}


def _evalsha_us(client: redis.Redis) -> tuple[int, int]:
    stats = client.info("commandstats").get("cmdstat_evalsha", {"calls": 0, "usec": 0})
    return int(stats["calls"]), int(stats["usec"])


async def measure(url: str, shape: str, pending: int, claims: int) -> dict[str, Any]:
    queues, types, route = SHAPES[shape]
    prefix = f"bench-claim-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    sync = redis.Redis.from_url(url)
    try:
        async with RedisStore(url, prefix=prefix) as store:
            entries = [
                ScheduledCommandEntry(
                    id=str(uuid.uuid4()),
                    command_type=types[n % len(types)],
                    payload="{}",
                    status=ScheduledCommandStatus.PENDING,
                    scheduled_for=NOW - timedelta(seconds=n % 1000),
                    created_at=NOW,
                    queue=queues[(n // len(types)) % len(queues)],
                )
                for n in range(pending)
            ]
            for start in range(0, pending, 1000):
                await store.add(entries[start : start + 1000])
            times: list[float] = []
            server_us: list[int] = []
            for _ in range(claims):
                calls_before, us_before = _evalsha_us(sync)
                start = time.perf_counter()
                claimed = await store.claim_due(now=NOW, limit=LIMIT, worker_id="w", lease_duration=LEASE, route=route)
                times.append(time.perf_counter() - start)
                calls_after, us_after = _evalsha_us(sync)
                if calls_after == calls_before + 1:  # nobody else ran a script meanwhile
                    server_us.append(us_after - us_before)
                for entry in claimed:  # back to PENDING, due as before: the sets keep their size
                    assert entry.lease_token is not None
                    await store.release(entry.id, entry.lease_token)
    finally:
        for key in sync.scan_iter(f"{prefix}:*", count=1000):
            sync.delete(key)
        sync.close()
    times.sort()
    return {
        "caller_ms_p50": round(statistics.median(times) * 1000, 3),
        "caller_ms_p95": round(times[int(len(times) * 0.95)] * 1000, 3),
        "server_us_p50": statistics.median(server_us) if server_us else None,
        "claimed_per_claim": len(claimed),
    }


async def main_async(args: argparse.Namespace) -> None:
    shapes = [shape for shape in SHAPES if args.shapes is None or shape in args.shapes.split(";")]
    results = {shape: await measure(args.redis, shape, args.pending, args.claims) for shape in shapes}
    env = {"python": sys.version.split()[0], "cpu_count": os.cpu_count(), "pending": args.pending, "limit": LIMIT}
    print(json.dumps({"bench": "redis_claim", "env": env, "shapes": results}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--claims", type=int, default=200)
    parser.add_argument("--shapes", help="a ';'-separated subset of the shapes (default: all)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
