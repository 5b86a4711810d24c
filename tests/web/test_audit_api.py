"""The audit trail through the admin API and the dashboard session: every change leaves one record naming who (the
bearer token, a browser session, or the mounting application's user), what, which entries, when and from where;
refused and dry-run requests leave none. ``GET /api/audit`` reads it back, newest first."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from dashboard_support import http_client
from fastapi import FastAPI, Request

from scheduling import ManualClock
from scheduling.web import DashboardSettings, create_dashboard_app
from stores import ScheduledCommandStore

FAIL = "scheduling_app.Fail"


async def trail(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/api/audit", params=params)
    assert response.status_code == 200, response.text
    records: list[dict[str, Any]] = response.json()["records"]
    return records


async def test_each_api_change_leaves_one_record_and_refusals_none(
    client: httpx.AsyncClient, clock: ManualClock, populated: dict[str, str]
) -> None:
    assert await trail(client) == []
    assert (await client.post(f"/api/entries/{populated['dead']}/requeue")).status_code == 200
    clock.advance(timedelta(seconds=1))
    assert (await client.post(f"/api/entries/{populated['done']}/requeue")).status_code == 409
    assert (await client.post(f"/api/entries/{populated['later']}/cancel")).status_code == 200
    clock.advance(timedelta(seconds=1))
    assert (await client.post("/api/dead-letters/requeue", json={"command_type": FAIL})).json()["requeued"] == [
        populated["dead2"]
    ]
    assert (await client.post("/api/recurring/report/pause")).status_code == 200
    assert (await client.post("/api/recurring/report/resume")).status_code == 200
    assert (await client.post("/api/recurring/nope/pause")).status_code == 404
    clock.advance(timedelta(seconds=10))
    assert (await client.post("/api/purge", json={"older_than": "1s", "dry_run": True})).status_code == 200
    assert (await client.post("/api/purge", json={"older_than": "1s", "statuses": ["CANCELLED"]})).status_code == 200

    records = await trail(client)
    assert [(r["action"], r["entry_ids"], r["target"], r["count"]) for r in records] == [
        ("purge", [], "older_than=1s statuses=CANCELLED", 3),  # "cancelled", "later", the paused occurrence
        ("resume", [], "report", 1),
        ("pause", [], "report", 1),
        ("requeue_failed", [], f"status=FAILED type={FAIL}", 1),
        ("cancel", [populated["later"]], None, 1),
        ("requeue", [populated["dead"]], None, 1),
    ]
    assert {(r["source"], r["actor"], r["client"]) for r in records} == {("api", "token", "127.0.0.1")}
    assert records[-1]["at"] == (clock.now() - timedelta(seconds=12)).isoformat().replace("+00:00", "Z")


async def test_the_trail_of_one_entry_and_paging(
    client: httpx.AsyncClient, clock: ManualClock, populated: dict[str, str]
) -> None:
    dead = populated["dead"]
    await client.post(f"/api/entries/{dead}/requeue")
    clock.advance(timedelta(seconds=1))
    await client.post(f"/api/entries/{populated['later']}/cancel")

    assert [r["action"] for r in await trail(client, entry_id=dead)] == ["requeue"]
    first = (await client.get("/api/audit", params={"limit": 1})).json()
    assert [r["action"] for r in first["records"]] == ["cancel"]
    older = await trail(client, limit=1, before=first["next_before"])
    assert [r["action"] for r in older] == ["requeue"]
    naive = await client.get("/api/audit", params={"before": "2030-01-01T00:00:00"})
    assert naive.status_code == 422 and "2030-01-01T00:00:00" in naive.text


async def test_a_browser_session_is_recorded_as_the_dashboard(
    browser: httpx.AsyncClient, populated: dict[str, str]
) -> None:
    response = await browser.post(f"/api/entries/{populated['dead']}/requeue")
    assert response.status_code == 200, response.text

    [record] = await trail(browser)
    assert (record["source"], record["actor"], record["action"]) == ("dashboard", "session", "requeue")


class User:
    def __init__(self, username: str) -> None:
        self.username = username


async def test_the_mounting_applications_user_is_the_actor(
    store: ScheduledCommandStore, clock: ManualClock, populated: dict[str, str]
) -> None:
    def authenticate(request: Request) -> User:
        return User(request.headers.get("x-user", "nobody"))

    app: FastAPI = create_dashboard_app(store, settings=DashboardSettings(), clock=clock, authenticate=authenticate)
    async with http_client(app, headers={"x-user": "alice", "Origin": "http://testserver"}) as alice:
        page = await alice.get("/")
        csrf = page.text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
        response = await alice.post(f"/api/entries/{populated['later']}/cancel", headers={"X-CSRF-Token": csrf})
        assert response.status_code == 200, response.text
        [record] = await trail(alice)
    assert (record["source"], record["actor"], record["action"]) == ("dashboard", "alice", "cancel")
