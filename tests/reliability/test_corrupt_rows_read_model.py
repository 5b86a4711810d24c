"""Operators see a corrupt row as corrupt and everything else as usual: the CLI (``status``, ``list``, ``show``, as real
processes), the admin API and the dashboard, on SQLite and PostgreSQL, with rows written behind the library's back."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from scheduling_app import START, Record, RecordHandler, make_app
from sqlalchemy import text

from scheduling.web import DashboardSettings, create_dashboard_app
from stores import SqlStore

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "corrupt-rows-token-0123456789"

# kind -> name -> the SQL assignments of a corrupt row: an unknown status, a due time Python cannot hold, and a
# dead letter whose completion time is no timestamp (the throughput of ``status`` reads it).
CORRUPTIONS = {
    "sqlite": {
        "bad_status": "status = 'WEIRD'",
        "bad_time": "scheduled_for = 'not a time'",
        "bad_done": "status = 'FAILED', completed_at = 'yesterday'",
    },
    "postgresql": {
        "bad_status": "status = 'WEIRD'",
        "bad_time": "scheduled_for = '-infinity'::timestamptz",
        "bad_done": "status = 'FAILED', completed_at = 'infinity'::timestamptz",
    },
}


async def corrupt_store(url: str, kind: str) -> dict[str, str]:
    """Three readable entries and three corrupt ones; returns their ids by name."""
    async with SqlStore(url) as store:
        async with store.engine.begin() as conn:
            await conn.execute(text("DELETE FROM scheduled_command_attempts"))
            await conn.execute(text("DELETE FROM scheduled_commands"))
        app = make_app(store=store, handlers=[RecordHandler])
        ids = {f"good{i}": await app.scheduler.schedule(Record(value=f"g{i}")) for i in range(3)}
        for name, assignments in CORRUPTIONS[kind].items():
            ids[name] = await app.scheduler.schedule(Record(value=name))
            async with store.engine.begin() as conn:
                await conn.execute(
                    text(f"UPDATE scheduled_commands SET {assignments} WHERE id = :id"), {"id": ids[name]}
                )
        return ids


@pytest.fixture(params=["sqlite", "postgresql"])
def corrupt(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str, dict[str, str]]:
    kind = request.param
    url = f"sqlite:///{tmp_path / 'corrupt.db'}" if kind == "sqlite" else request.getfixturevalue("module_postgres_url")
    return kind, url, asyncio.run(corrupt_store(url, kind))


def cli(*args: str, store: str) -> subprocess.CompletedProcess[str]:
    environment = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "support"), str(ROOT)])}
    environment.pop("CQRS_SCHEDULING_STORE", None)
    return subprocess.run(
        [sys.executable, "-m", "scheduling", *args, "--store", store],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment,
        timeout=60,
    )


def test_cli_status_list_and_show_with_corrupt_rows(corrupt: tuple[str, str, dict[str, str]]) -> None:
    _, url, ids = corrupt
    status = cli("status", "--json", store=url)
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
    report = json.loads(status.stdout)
    assert report["counts"]["PENDING"] == 4  # the unknown status is not counted
    assert report["counts"]["FAILED"] == 1 and report["throughput"]["totals"]["FAILED"] == 0  # no minute holds it
    human_status = cli("status", store=url)
    assert human_status.returncode == 0 and "Traceback" not in human_status.stderr, human_status.stderr

    listed = cli("list", "--json", store=url)
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    page = json.loads(listed.stdout)
    assert sorted(entry["id"] for entry in page["entries"]) == sorted(ids[f"good{i}"] for i in range(3))
    unreadable = {row["id"]: row for row in page["unreadable"]}
    assert set(unreadable) == {ids["bad_status"], ids["bad_time"], ids["bad_done"]}
    assert unreadable[ids["bad_status"]]["column"] == "status" and "'WEIRD'" in unreadable[ids["bad_status"]]["value"]
    assert unreadable[ids["bad_time"]]["column"] == "scheduled_for"

    human = cli("list", store=url)
    assert human.returncode == 0 and "Traceback" not in human.stderr, human.stderr
    corrupt_lines = [line for line in human.stdout.splitlines() if line.startswith("corrupt row")]
    assert len(corrupt_lines) == 3, human.stdout
    assert any(ids["bad_status"] in line and "column status holds 'WEIRD'" in line for line in corrupt_lines)
    assert all(ids[f"good{i}"] in human.stdout for i in range(3))

    for name, column in (("bad_status", "status"), ("bad_time", "scheduled_for")):
        shown = cli("show", ids[name], store=url)
        assert shown.returncode == 1, (shown.stdout, shown.stderr)
        lines = shown.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in shown.stderr, shown.stderr
        assert ids[name] in lines[0] and f"column {column} holds" in lines[0], lines[0]
    good = cli("show", ids["good0"], store=url)
    assert good.returncode == 0 and ids["good0"] in good.stdout, good.stderr


@pytest.fixture
async def dashboard_client(corrupt: tuple[str, str, dict[str, str]]) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    _, url, ids = corrupt
    async with SqlStore(url) as store:
        from scheduling import ManualClock

        app = create_dashboard_app(store, settings=DashboardSettings(token=TOKEN), clock=ManualClock(START))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client:
            yield client, ids


async def test_admin_api_and_dashboard_with_corrupt_rows(dashboard_client: tuple[httpx.AsyncClient, Any]) -> None:
    client, ids = dashboard_client
    overview = await client.get("/api/overview")
    assert overview.status_code == 200, overview.text
    entries = await client.get("/api/entries")
    assert entries.status_code == 200, entries.text
    body = entries.json()
    assert len(body["entries"]) == 3
    assert {row["id"] for row in body["unreadable"]} == {ids["bad_status"], ids["bad_time"], ids["bad_done"]}
    bad = await client.get(f"/api/entries/{ids['bad_status']}")
    assert bad.status_code == 422 and "column status holds 'WEIRD'" in bad.json()["detail"], bad.text
    good = await client.get(f"/api/entries/{ids['good1']}")
    assert good.status_code == 200 and good.json()["entry"]["id"] == ids["good1"]
    cancel = await client.post(f"/api/entries/{ids['bad_status']}/cancel")
    assert cancel.status_code in (409, 422) and "Traceback" not in cancel.text, cancel.text

    html = {"Accept": "text/html"}
    for path in ("/", "/entries", "/dead-letters"):
        page = await client.get(path, headers=html)
        assert page.status_code == 200, (path, page.text[:500])
    listing = (await client.get("/entries", headers=html)).text
    assert "Corrupt row" in listing and "column status holds" in listing
    assert all(ids[f"good{i}"] in listing for i in range(3))
    detail = await client.get(f"/entries/{ids['bad_time']}", headers=html)
    assert detail.status_code == 422 and "column scheduled_for holds" in detail.text
