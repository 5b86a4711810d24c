"""Workflows across real worker processes, on SQLite, PostgreSQL and Redis: a chain of 3 and a fan-out/fan-in of 100
complete in order with results passed along; a worker SIGKILLed again and again while it completes parents loses
and doubles no dependant; a failed parent cancels its dependants with the reason.

"In order" is read from the store: every dependant's first attempt started at or after each parent's completion.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cli_support import cli
from injector import Injector
from workflow_app import CANCELLED_LOG_ENV, HANDLERS, Boom, Square, Step, Total

from mediator import MediatorModule
from scheduling import CommandScheduler, ScheduledCommandStatus, ScheduleOptions, SchedulingModule
from scheduling.errors import CommandCancelledError
from stores import ScheduledCommandStore, SqlStore
from stores.entries import TERMINAL_STATUSES
from stores.urls import store_from_url

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "tests" / "support"
TERMINAL = {ScheduledCommandStatus.COMPLETED, ScheduledCommandStatus.CANCELLED, ScheduledCommandStatus.FAILED}


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path, new_postgres_database: Callable[[str, str], str]) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'workflows.db'}"
    if request.param == "redis":
        return f"{request.getfixturevalue('redis_url')}?prefix={request.getfixturevalue('redis_prefix')}"
    return new_postgres_database(request.getfixturevalue("postgres_url"), "workflows")


def start_worker(store_url: str, concurrency: int = 10) -> subprocess.Popen[str]:
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(SUPPORT), str(ROOT)])}
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "scheduling", "worker", "--app", "workflow_app:build_injector"),
            *("--store", store_url, "--polling-interval", "0.2", "--concurrency", str(concurrency)),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(worker: subprocess.Popen[str]) -> str:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    try:
        _, stderr = worker.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        _, stderr = worker.communicate()
    return stderr or ""


@contextmanager
def worker_running(store_url: str) -> Iterator[subprocess.Popen[str]]:
    worker = start_worker(store_url)
    try:
        # Up (registered, its signal handlers set) before the test goes on: when there is nothing left for it to do,
        # the test stops it at once, and a SIGTERM during start-up ends it by the signal's default (-15).
        asyncio.run(_until_registered(store_url, worker.pid))
        yield worker
    finally:
        stderr = stop(worker)
        assert worker.returncode in (0, -signal.SIGKILL), stderr[-3000:]


async def _until_registered(store_url: str, pid: int, timeout: float = 30) -> None:
    async with store_from_url(store_url) as store:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(worker.pid == pid for worker in await store.list_workers()):
                return
            await asyncio.sleep(0.1)


def scheduler_on(store: ScheduledCommandStore) -> CommandScheduler:
    return Injector([MediatorModule(HANDLERS), SchedulingModule(store=store)]).get(CommandScheduler)


async def assert_in_order(store: ScheduledCommandStore, entry_id: str) -> None:
    """The entry's first attempt started at or after every parent's completion."""
    attempts = await store.get_attempts(entry_id)
    assert attempts, f"{entry_id} never ran"
    for parent_id in await store.get_parents(entry_id):
        parent = await store.get(parent_id)
        assert parent is not None and parent.completed_at is not None
        assert attempts[0].started_at >= parent.completed_at, f"{entry_id} started before its parent {parent_id} ended"


@pytest.mark.timeout(120)
def test_a_chain_of_3_and_a_fan_in_of_100_complete_in_order_with_results(store_url: str) -> None:
    async def scenario() -> None:
        async with store_from_url(store_url) as store:
            scheduler = scheduler_on(store)
            first = await scheduler.schedule(Step(n=1))
            second = await scheduler.schedule(Step(n=10), ScheduleOptions(after=first))
            third = await scheduler.schedule(Step(n=100), ScheduleOptions(after=second))
            group = await scheduler.schedule_group([Square(i=i) for i in range(100)], then=Total())
            assert await scheduler.wait(third, timeout=60) == 111
            assert await scheduler.wait(group.callback_id, timeout=60) == [sum(i * i for i in range(100)), 100, 100]
            for entry_id in (second, third, group.callback_id):
                await assert_in_order(store, entry_id)

    with worker_running(store_url):
        asyncio.run(scenario())


@pytest.mark.timeout(120)
def test_a_failed_parent_cancels_its_dependants_with_the_reason(store_url: str) -> None:
    async def scenario() -> tuple[str, str, str]:
        async with store_from_url(store_url) as store:
            scheduler = scheduler_on(store)
            parent = await scheduler.schedule(Boom(), ScheduleOptions(max_retries=0))
            child = await scheduler.schedule(Step(n=1), ScheduleOptions(after=parent))
            grandchild = await scheduler.schedule(Step(n=2), ScheduleOptions(after=child))
            with pytest.raises(CommandCancelledError, match=f"parent {parent} ended FAILED"):
                await scheduler.wait(child, timeout=60)
            with pytest.raises(CommandCancelledError, match=f"parent {child} ended CANCELLED"):
                await scheduler.wait(grandchild, timeout=60)
            assert await store.get_attempts(child) == []
            return parent, child, grandchild

    with worker_running(store_url):
        parent, child, grandchild = asyncio.run(scenario())
    # The operator's view: ``show`` lists the parents and dependants.
    shown = cli("show", child, "--json", store=store_url)
    assert shown.returncode == 0, shown.stderr
    detail = json.loads(shown.stdout)
    assert [(p["id"], p["status"]) for p in detail["parents"]] == [(parent, "FAILED")]
    assert [(d["id"], d["status"]) for d in detail["dependants"]] == [(grandchild, "CANCELLED")]
    text = cli("show", child, store=store_url)
    assert text.returncode == 0, text.stderr
    assert f"parent {parent}" in text.stdout and f"dependant {grandchild}" in text.stdout


@pytest.mark.timeout(120)
def test_cli_cancel_with_the_app_announces_the_entry_and_the_dependants_it_cancels(
    store_url: str, tmp_path: Path
) -> None:
    """``cancel --app``: the entry and the dependants cancelled with it (a cascade of two) reach the application's
    ``ScheduledCommandCancelled`` handler, in the CLI's process, with their reasons. Without ``--app`` the store
    changes the same way and nothing is announced."""

    async def schedule(chains: int) -> list[tuple[str, str, str]]:
        async with store_from_url(store_url) as store:
            scheduler = scheduler_on(store)
            made = []
            for n in range(chains):
                parent = await scheduler.schedule(Step(n=n), ScheduleOptions(delay=timedelta(days=1)))
                child = await scheduler.schedule(Step(n=n), ScheduleOptions(after=parent))
                grandchild = await scheduler.schedule(Step(n=n), ScheduleOptions(after=child))
                made.append((parent, child, grandchild))
            return made

    (parent, child, grandchild), (plain_parent, plain_child, plain_grandchild) = asyncio.run(schedule(2))
    log = tmp_path / "cancelled.jsonl"
    env = {CANCELLED_LOG_ENV: str(log)}
    result = cli("cancel", parent[:12], "--app", "workflow_app:build_injector", store=store_url, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"cancelled {parent}"
    heard = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted((h["id"], h["reason"]) for h in heard) == sorted(
        [
            (parent, None),
            (child, f"ParentNotCompleted: parent {parent} ended CANCELLED"),
            (grandchild, f"ParentNotCompleted: parent {child} ended CANCELLED"),
        ]
    )
    assert {h["pid"] for h in heard} != {os.getpid()}

    result = cli("cancel", plain_parent, store=store_url, env=env)
    assert result.returncode == 0, result.stderr
    assert len(log.read_text().splitlines()) == len(heard)  # nothing more heard

    async def statuses() -> dict[str, tuple[ScheduledCommandStatus, str | None]]:
        async with store_from_url(store_url) as store:
            found = {}
            for entry_id in (parent, child, grandchild, plain_parent, plain_child, plain_grandchild):
                entry = await store.get(entry_id)
                assert entry is not None
                found[entry_id] = (entry.status, entry.error_message)
            return found

    cancelled = ScheduledCommandStatus.CANCELLED
    assert asyncio.run(statuses()) == {
        parent: (cancelled, None),
        child: (cancelled, f"ParentNotCompleted: parent {parent} ended CANCELLED"),
        grandchild: (cancelled, f"ParentNotCompleted: parent {child} ended CANCELLED"),
        plain_parent: (cancelled, None),
        plain_child: (cancelled, f"ParentNotCompleted: parent {plain_parent} ended CANCELLED"),
        plain_grandchild: (cancelled, f"ParentNotCompleted: parent {plain_child} ended CANCELLED"),
    }


@pytest.mark.timeout(120)
def test_cli_bulk_cancel_with_the_app_announces_each_entry_and_its_dependants(store_url: str, tmp_path: Path) -> None:
    """``bulk cancel --app`` over a search: each PENDING parent and the dependant cancelled with it reach the
    application's ``ScheduledCommandCancelled`` handler, with their reasons; ``bulk requeue --app`` is refused (only
    cancellations are announced), exit code 2, nothing done."""

    async def schedule() -> list[tuple[str, str]]:
        async with store_from_url(store_url) as store:
            scheduler = scheduler_on(store)
            made = []
            for n in range(3):
                parent = await scheduler.schedule(Step(n=n), ScheduleOptions(delay=timedelta(days=1)))
                made.append((parent, await scheduler.schedule(Step(n=n), ScheduleOptions(after=parent))))
            return made

    chains = asyncio.run(schedule())
    log = tmp_path / "cancelled.jsonl"
    env = {CANCELLED_LOG_ENV: str(log)}
    refused = cli("bulk", "requeue", "--yes", "--app", "workflow_app:build_injector", store=store_url, env=env)
    assert refused.returncode == 2 and "--app" in refused.stderr, refused.stderr

    result = cli(
        *("bulk", "cancel", "--type", "Step", "--yes", "--app", "workflow_app:build_injector"), store=store_url, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "cancelled 3 of 3 PENDING entries" in result.stdout, result.stdout
    heard = sorted((h["id"], h["reason"]) for h in map(json.loads, log.read_text().splitlines()))
    assert heard == sorted(
        [(parent, None) for parent, _ in chains]
        + [(child, f"ParentNotCompleted: parent {parent} ended CANCELLED") for parent, child in chains]
    )


async def _schedule_chains(store_url: str, count: int) -> list[tuple[str, str]]:
    async with store_from_url(store_url) as store:
        scheduler = scheduler_on(store)
        pairs = []
        for n in range(count):
            parent = await scheduler.schedule(Square(i=n, delay=0.2))
            child = await scheduler.schedule(Step(n=0), ScheduleOptions(after=parent))
            pairs.append((parent, child))
        return pairs


async def _outcome(store_url: str, pairs: list[tuple[str, str]], timeout: float) -> dict[str, Any]:
    async with store_from_url(store_url) as store:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            statuses = [(await store.get(child)) for _, child in pairs]
            if all(entry is not None and entry.status in TERMINAL for entry in statuses):
                break
            await asyncio.sleep(0.1)
        counts = await store.count_by_status()
        children = {child: await store.get(child) for _, child in pairs}
        for _, child in pairs:
            await assert_in_order(store, child)
        return {"counts": counts, "children": children}


_ENDED = ", ".join(f"'{status.value}'" for status in sorted(TERMINAL_STATUSES))
#: The dependency bookkeeping of every dependant, read in one statement: its status and counter, how many of its
#: parents have not ended, and how many of its pairs say otherwise than their parent's status (``resolved`` is set
#: exactly when the parent ended: no parent here is requeued).
_DEPENDANTS = f"""
SELECT c.id, c.status, c.pending_parents,
       (SELECT count(*) FROM scheduled_command_dependencies AS d JOIN scheduled_commands AS p ON p.id = d.parent_id
        WHERE d.child_id = c.id AND p.status NOT IN ({_ENDED})) AS unfinished,
       (SELECT count(*) FROM scheduled_command_dependencies AS d JOIN scheduled_commands AS p ON p.id = d.parent_id
        WHERE d.child_id = c.id
          AND d.resolved <> (p.status IN ({_ENDED}))) AS mismatched
FROM scheduled_commands AS c
WHERE c.id IN (SELECT child_id FROM scheduled_command_dependencies)
"""


async def _leftovers(store_url: str, pairs: list[tuple[str, str]]) -> dict[str, str]:
    """What the store holds between workers: the PROCESSING entries (id -> lease owner); and the dependants'
    bookkeeping checked through the store's own reads (every store): a WAITING dependant counts exactly its unfinished
    parents (so none waits whose parents all ended), any other has a counter of 0. On the SQL stores also every pair
    is resolved exactly when its parent ended (one statement over the dependencies table)."""
    async with store_from_url(store_url) as store:
        running = await store.list_entries(status=ScheduledCommandStatus.PROCESSING, limit=500)
        held = {entry.id: str(entry.lease_owner) for entry in running}
        for _, child_id in pairs:
            child = await store.get(child_id)
            assert child is not None, child_id
            parents = [await store.get(parent_id) for parent_id in await store.get_parents(child_id)]
            unfinished = sum(1 for parent in parents if parent is None or parent.status not in TERMINAL_STATUSES)
            expected = unfinished if child.status is ScheduledCommandStatus.WAITING else 0
            assert child.pending_parents == expected, f"{child_id} {child.status}: pending {child.pending_parents}"
            assert child.status is not ScheduledCommandStatus.WAITING or unfinished > 0, child
        if isinstance(store, SqlStore):
            async with store.engine.connect() as conn:
                for row in (await conn.exec_driver_sql(_DEPENDANTS)).all():
                    assert row.mismatched == 0, f"{row.id}: {row.mismatched} pair(s) resolved otherwise than parent"
    return held


@pytest.mark.timeout(180)
def test_sigkill_of_the_worker_completing_parents_loses_and_doubles_no_dependant(store_url: str) -> None:
    """Three workers SIGKILLed in turn while they complete parents; then one runs to the end. After each kill, the
    store holds no half-done release (every dependant's counter matches its unfinished parents) and only the killed
    worker's entries are PROCESSING; after recovery nothing is PROCESSING or WAITING, and each entry the killed
    workers held ran again and completed, with the killed attempt recorded as lost."""
    pairs = asyncio.run(_schedule_chains(store_url, 40))
    held_by_killed: dict[str, set[str]] = {}  # entry -> the killed workers seen holding it
    for _ in range(3):  # kill a worker in the middle of completing parents, three times
        victim = start_worker(store_url)
        asyncio.run(_until_holding(store_url, victim.pid))
        victim.send_signal(signal.SIGKILL)
        stop(victim)
        held = asyncio.run(_leftovers(store_url, pairs))
        for entry_id, owner in held.items():
            # Held by this victim, or by an earlier one (a lease outlives its worker until it expires).
            assert entry_id in held_by_killed or f":{victim.pid}:" in owner, (entry_id, owner, victim.pid)
            held_by_killed.setdefault(entry_id, set()).add(owner)
    with worker_running(store_url):
        result = asyncio.run(_outcome(store_url, pairs, timeout=90))
    assert held_by_killed, "no kill found its worker holding an entry"
    assert asyncio.run(_leftovers(store_url, pairs)) == {}  # nothing PROCESSING after recovery
    children = result["children"]
    for parent_id, child_id in pairs:
        child = children[child_id]
        assert child is not None and child.status is ScheduledCommandStatus.COMPLETED, (child_id, child)
        assert child.pending_parents == 0
        n = int(parent_id != "") and pairs.index((parent_id, child_id))
        assert child.result_payload == str(n * n)  # its parent's result, passed along
    counts = result["counts"]
    assert counts[ScheduledCommandStatus.COMPLETED] == 2 * len(pairs)  # no entry lost, none added
    assert sum(counts.values()) == 2 * len(pairs)
    asyncio.run(_assert_recovered(store_url, held_by_killed))


async def _until_holding(store_url: str, pid: int, timeout: float = 30) -> None:
    """Until the worker of ``pid`` holds an entry (it is running parents and completing them), or no work is left."""
    async with store_from_url(store_url) as store:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            counts = await store.count_by_status()
            running = await store.list_entries(status=ScheduledCommandStatus.PROCESSING, limit=100)
            if any(f":{pid}:" in (entry.lease_owner or "") for entry in running):
                return
            if not counts.get(ScheduledCommandStatus.PENDING) and not counts.get(ScheduledCommandStatus.WAITING):
                return
            await asyncio.sleep(0.02)


async def _assert_recovered(store_url: str, held_by_killed: dict[str, set[str]]) -> None:
    """Each entry a killed worker held completed later, with a killed attempt recorded as lost under a worker seen
    holding it (the last one seen, at least, was taken over by a worker that lived to record it)."""
    async with store_from_url(store_url) as store:
        for entry_id, owners in held_by_killed.items():
            entry = await store.get(entry_id)
            assert entry is not None and entry.status is ScheduledCommandStatus.COMPLETED, entry
            attempts = await store.get_attempts(entry_id)
            assert any(a.outcome == "lost" and a.worker_id in owners for a in attempts), (entry_id, owners, attempts)
            assert attempts[-1].outcome == "completed", attempts
