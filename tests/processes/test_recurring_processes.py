"""Recurring schedules across real processes: four processes declaring one schedule at once, and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scheduling import ScheduledCommandStatus
from stores import SqlStore

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "tests" / "support"

#: One application process starting up: it declares its schedule (at the same moment as the others).
DECLARE = """
import asyncio, sys, time
from datetime import timedelta
from scheduling_app import Record, make_app
from stores import SqlStore

async def main(url: str, start_at: float) -> None:
    async with SqlStore(url) as store:
        app = make_app(store=store)
        time.sleep(max(0.0, start_at - time.time()))
        await app.scheduler.schedule_recurring("report", Record(value="r"), cron="0 9 * * 1-5", timezone="Europe/Paris")
        await app.scheduler.schedule_recurring("cleanup", Record(value="c"), interval=timedelta(minutes=5))

asyncio.run(main(sys.argv[1], float(sys.argv[2])))
"""


def environment() -> dict[str, str]:
    return os.environ | {"PYTHONPATH": os.pathsep.join([str(SUPPORT), str(ROOT)])}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'recurring.db'}"
    import psycopg
    from sqlalchemy.engine import make_url

    base: str = request.getfixturevalue("postgres_url")
    conninfo = make_url(base).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for table in ("scheduled_commands", "scheduled_command_attempts", "recurring_schedules"):
            if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone() == (True,):
                conn.execute(f"TRUNCATE {table}")
    return base


def test_four_processes_declaring_at_once_store_each_schedule_once(url: str) -> None:
    import time

    start_at = time.time() + 3.0  # every process has imported and connected by then
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", DECLARE, url, str(start_at)],
            env=environment(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr

    async def check() -> None:
        async with SqlStore(url) as store:
            schedules = await store.list_schedules()
            assert [(s.name, s.generation) for s in schedules] == [("cleanup", 1), ("report", 1)]
            pending = await store.list_entries(status=ScheduledCommandStatus.PENDING)
            assert sorted(e.recurring_name or "" for e in pending) == ["cleanup", "report"]
            assert sum((await store.count_by_status()).values()) == 2  # nothing was cancelled either

    asyncio.run(check())


def cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scheduling", "recurring", *args, "--store", url],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=60,
    )


def test_cli_lists_pauses_resumes_and_removes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    subprocess.run(
        [sys.executable, "-c", DECLARE, url, "0"], env=environment(), check=True, capture_output=True, timeout=60
    )
    listed = cli("list", "--json", url=url)
    assert listed.returncode == 0, listed.stderr
    document = json.loads(listed.stdout)
    assert [s["name"] for s in document["schedules"]] == ["cleanup", "report"]
    assert document["schedules"][0]["interval"] == 300.0
    assert document["schedules"][1]["cron"] == "0 9 * * 1-5"
    assert "report" in cli("list", url=url).stdout

    paused = cli("pause", "report", "--json", url=url)
    assert paused.returncode == 0, paused.stderr
    assert len(json.loads(paused.stdout)["cancelled"]) == 1
    resumed = cli("resume", "report", url=url)
    assert resumed.returncode == 0 and "next occurrence at" in resumed.stdout, resumed.stderr
    removed = cli("remove", "cleanup", url=url)
    assert removed.returncode == 0 and "removed cleanup" in removed.stdout, removed.stderr

    async def check() -> None:
        async with SqlStore(url) as store:
            assert [s.name for s in await store.list_schedules()] == ["report"]
            pending = await store.list_entries(status=ScheduledCommandStatus.PENDING)
            assert [e.recurring_name for e in pending] == ["report"]
            # Each change left one audit record, newest first, naming the schedule.
            trail = [(r.source, r.action, r.target) for r in await store.list_audit_records()]
            assert trail == [("cli", "remove", "cleanup"), ("cli", "resume", "report"), ("cli", "pause", "report")]

    asyncio.run(check())
    for command in ("pause", "resume", "remove"):
        missing = cli(command, "nope", url=url)
        assert missing.returncode == 1
        assert missing.stderr.strip().startswith("error: no recurring schedule named 'nope'")

    async def nothing_more() -> None:
        async with SqlStore(url) as store:
            assert len(await store.list_audit_records()) == 3  # the refusals left none

    asyncio.run(nothing_more())
    assert cli("pause", url=url).returncode == 2


def test_cli_runs_a_schedule_now_and_lists_its_occurrences_and_the_outcomes(tmp_path: Path) -> None:
    """``recurring run-now`` adds one occurrence due now (audited), ``recurring occurrences`` lists it newest first
    beside the regular one, and ``outcomes --json`` answers with the overview's document; unknown names and ranges
    are one-line errors."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    subprocess.run(
        [sys.executable, "-c", DECLARE, url, "0"], env=environment(), check=True, capture_output=True, timeout=60
    )
    ran = cli("run-now", "report", "--json", url=url)
    assert ran.returncode == 0, ran.stderr
    added = json.loads(ran.stdout)
    assert added["name"] == "report" and added["created"] is True

    listed = cli("occurrences", "report", "--json", url=url)
    assert listed.returncode == 0, listed.stderr
    document = json.loads(listed.stdout)
    assert document["occurrences"][0]["id"] == added["id"]
    assert len(document["occurrences"]) == 2 and document["schedule"]["last_outcome"] is None
    assert added["id"] in cli("occurrences", "report", url=url).stdout

    outcomes = subprocess.run(
        [sys.executable, "-m", "scheduling", "outcomes", "--range", "24h", "--json", "--store", url],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=60,
    )
    assert outcomes.returncode == 0, outcomes.stderr
    history = json.loads(outcomes.stdout)
    assert history["range"] == "24h" and len(history["buckets"]) == 24
    assert history["totals"] == {"completed": 0, "retried": 0, "failed": 0, "expired": 0}

    async def audited() -> list[tuple[str, str, str | None, tuple[str, ...]]]:
        async with SqlStore(url) as store:
            return [(r.source, r.action, r.target, r.entry_ids) for r in await store.list_audit_records()]

    assert asyncio.run(audited()) == [("cli", "run-now", "report", (added["id"],))]
    for command in ("run-now", "occurrences"):
        missing = cli(command, "nope", url=url)
        assert missing.returncode == 1
        assert missing.stderr.strip().startswith("error: no recurring schedule named 'nope'")
    bad = subprocess.run(
        [sys.executable, "-m", "scheduling", "outcomes", "--range", "1y", "--store", url],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=60,
    )
    assert bad.returncode == 2 and "unknown range '1y'" in bad.stderr
