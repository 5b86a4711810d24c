"""Worker processes on RedisStore: exactly once across a fleet, and a Redis crash mid-drain loses nothing.

The fleet test uses the machine's Redis under a key prefix of its own. The crash test starts a throwaway
``redis-server`` of its own on a free port, with AOF (``appendfsync always``) in a temporary directory, SIGKILLs it
while workers drain, and starts it again on the same files: every write the server acknowledged must still be there.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from reliability_support import (
    Fleet,
    attempt_outcomes,
    entries_completed_twice,
    executed_lines,
    executions,
    schedule_jobs,
    wait_until_completed,
)

from scheduling import ScheduledCommandStatus

# Fleets of worker processes under load, timed by their own clocks: the Makefile's --dist loadgroup runs the tests of
# this group one after another, so two fleets never share the two cores (a starved fleet misses its rates and leases).
pytestmark = pytest.mark.xdist_group("worker-fleets")

CONCURRENCY = 10


def drain_exactly_once(store_url: str, directory: Path, *, processes: int, count: int) -> None:
    asyncio.run(schedule_jobs(store_url, count))
    fleet = Fleet(store_url, directory, app="worker_app:build_injector", concurrency=CONCURRENCY)
    try:
        for _ in range(processes):
            fleet.start()
        counts = asyncio.run(wait_until_completed(store_url, count, timeout=300))
    finally:
        fleet.stop()
    assert counts[ScheduledCommandStatus.COMPLETED] == count, (counts, fleet.logs()[-3000:])
    seen = executions(fleet.outputs)
    assert sorted(seen) == list(range(count)), "no command was lost"
    assert max(seen.values()) == 1, [n for n, times in seen.items() if times > 1][:20]
    assert attempt_outcomes(store_url) == {"completed": count}
    assert all(w.process.returncode == 0 for w in fleet.workers), [w.process.returncode for w in fleet.workers]


@pytest.mark.timeout(400)
def test_four_redis_workers_run_ten_thousand_commands_exactly_once(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    drain_exactly_once(f"{redis_url}?prefix={redis_prefix}", tmp_path, processes=4, count=10_000)


# -- a Redis crash mid-drain ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_redis(directory: Path, port: int) -> subprocess.Popen[bytes]:
    """A redis-server of this test's own: AOF with an fsync per write, no RDB snapshots, files in ``directory``."""
    process = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--logfile",
            str(directory / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    with redis.Redis(port=port) as client:
        while True:
            try:
                if client.ping():
                    return process
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    process.kill()
                    raise RuntimeError(f"redis-server on port {port} did not start") from None
                time.sleep(0.05)


@contextlib.contextmanager
def throwaway_redis(directory: Path) -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    """A port and the servers started on it (the test restarts it); every one is stopped afterwards."""
    port = free_port()
    servers = [start_redis(directory, port)]
    try:
        yield port, servers
    finally:
        for server in servers:
            if server.poll() is None:
                server.kill()
            server.wait(timeout=30)


def completed_ids(port: int, prefix: str) -> set[str]:
    with redis.Redis(port=port, decode_responses=True) as client:
        return set(client.zrange(f"{prefix}:s:COMPLETED", 0, -1))


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server binary")
@pytest.mark.timeout(300)
def test_a_redis_crash_mid_drain_loses_nothing_acknowledged(tmp_path: Path) -> None:
    count, prefix = 5_000, "crash"
    data = tmp_path / "redis"
    data.mkdir()
    with throwaway_redis(data) as (port, servers):
        store_url = f"redis://127.0.0.1:{port}/0?prefix={prefix}"
        asyncio.run(schedule_jobs(store_url, count, seconds=0.002))
        fleet = Fleet(store_url, tmp_path, concurrency=CONCURRENCY)
        try:
            for _ in range(2):
                fleet.start()
            deadline = time.monotonic() + 120
            while executed_lines(fleet.outputs) < count // 4 and time.monotonic() < deadline:
                time.sleep(0.05)
            acknowledged = completed_ids(port, prefix)
            servers[0].kill()  # SIGKILL: no shutdown, no final fsync
            servers[0].wait(timeout=30)
            time.sleep(1.0)  # the workers meet a server that is gone
            servers.append(start_redis(data, port))
            after_restart = completed_ids(port, prefix)
            counts = asyncio.run(wait_until_completed(store_url, count, timeout=180))
        finally:
            fleet.stop()
        assert acknowledged, "the crash came before any command completed"
        assert acknowledged <= after_restart, f"{len(acknowledged - after_restart)} acknowledged completions lost"
        assert counts[ScheduledCommandStatus.COMPLETED] == count, (counts, fleet.logs()[-3000:])
        assert sum(counts.values()) == count
        seen = executions(fleet.outputs)
        assert sorted(seen) == list(range(count)), "no command was lost"
        assert entries_completed_twice(store_url) == 0
        assert attempt_outcomes(store_url)["completed"] == count
        assert all(w.process.returncode == 0 for w in fleet.workers), fleet.logs()[-3000:]
