"""The admin JSON API: every route, its filters and paging, its errors, and bodies equal to the CLI's ``--json``.

Each route answers from ``scheduling.admin``, as the CLI does; the tests compare bodies with those functions'
``model_dump(mode="json")`` (what ``--json`` prints) on the same store, at the same (manual) time.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from dashboard_support import TOKEN, http_client, populate
from fastapi import FastAPI
from scheduling_app import App

from scheduling import ManualClock, ScheduleOptions, admin
from scheduling.entries import ScheduledCommandStatus
from stores import ScheduledCommandStore, SqlStore
from stores.schedules import StoredSchedule

FAIL = "scheduling_app.Fail"
RECORD = "scheduling_app.Record"


def json_of(model: Any) -> Any:
    """What the CLI prints with --json for an operations result."""
    return model.model_dump(mode="json")


async def test_overview_is_the_status_json(
    client: httpx.AsyncClient, store: ScheduledCommandStore, clock: ManualClock, populated: dict[str, str]
) -> None:
    """GET /api/overview: counts, next due, dead letters per type and throughput, as ``status --json``."""
    response = await client.get("/api/overview")
    assert response.status_code == 200
    body = response.json()
    assert body == json_of(await admin.overview(store, clock.now()))
    assert body["counts"] == {
        "PENDING": 2,  # "later" and the first occurrence of "report"
        "PROCESSING": 0,
        "COMPLETED": 1,
        "FAILED": 2,
        "CANCELLED": 1,
        "EXPIRED": 0,
        "WAITING": 0,
    }
    assert body["dead_letters_by_type"] == {FAIL: 2}
    throughput = body["throughput"]
    assert len(throughput["buckets"]) == 60 and throughput["bucket_seconds"] == 60.0
    assert throughput["totals"] == {"CANCELLED": 1, "COMPLETED": 1, "EXPIRED": 0, "FAILED": 2}
    assert throughput["buckets"][-1]["counts"] == throughput["totals"]  # all finished in the current minute


async def test_overview_throughput_moves_with_the_clock(
    client: httpx.AsyncClient, clock: ManualClock, populated: dict[str, str]
) -> None:
    """An hour later the finished entries have left the throughput window; overdue lag appears when due."""
    clock.advance(timedelta(minutes=30))
    half = (await client.get("/api/overview")).json()
    assert half["throughput"]["totals"]["FAILED"] == 2
    assert half["throughput"]["buckets"][-31]["counts"]["FAILED"] == 2
    clock.advance(timedelta(minutes=31))
    later = (await client.get("/api/overview")).json()
    assert later["throughput"]["totals"] == {"CANCELLED": 0, "COMPLETED": 0, "EXPIRED": 0, "FAILED": 0}
    assert later["oldest_overdue_lag_seconds"] == pytest.approx(60)  # "report" was due an hour after START


async def test_outcomes_over_an_hour_a_day_and_a_week_follow_the_clock(
    client: httpx.AsyncClient, store: ScheduledCommandStore, clock: ManualClock, populated: dict[str, str]
) -> None:
    """GET /api/outcomes?range=: the body of ``outcomes --json``; the two dead letters and the completed entry are
    in the current minute, then (two hours on) only in the 24 h and 7 d ranges, in the bar of their hour; a week and
    a day on, in none. A range that is not 1h, 24h or 7d is a 422 naming it."""
    now_body = (await client.get("/api/outcomes")).json()
    assert now_body == json_of(await admin.outcome_history(store, clock.now(), "1h"))
    assert len(now_body["buckets"]) == 60 and now_body["bucket_seconds"] == 60.0
    assert now_body["totals"] == {"completed": 1, "retried": 0, "failed": 2, "expired": 0}
    assert now_body["buckets"][-1]["counts"] == now_body["totals"]
    assert now_body["failures_by_type"] == [{"command_type": FAIL, "failed": 2, "retried": 0}]

    clock.advance(timedelta(hours=2))
    assert sum((await client.get("/api/outcomes?range=1h")).json()["totals"].values()) == 0
    for range_, bars, bar_hours in (("24h", 24, 1), ("7d", 28, 6)):
        body = (await client.get(f"/api/outcomes?range={range_}")).json()
        assert len(body["buckets"]) == bars and body["bucket_seconds"] == bar_hours * 3600
        assert body["totals"]["failed"] == 2 and body["totals"]["completed"] == 1
        [bar] = [b for b in body["buckets"] if any(b["counts"].values())]
        assert bar["start"] == "2026-03-01T12:00:00Z"
    clock.advance(timedelta(days=8))
    assert sum((await client.get("/api/outcomes?range=7d")).json()["totals"].values()) == 0

    refused = await client.get("/api/outcomes?range=1y")
    assert refused.status_code == 422 and "'1y'" in refused.json()["detail"]


async def test_list_entries_filters_and_pages(
    client: httpx.AsyncClient, store: ScheduledCommandStore, populated: dict[str, str]
) -> None:
    """GET /api/entries: status, command_type and correlation_id filters; limit/offset paging, newest first."""
    failed = (await client.get("/api/entries", params={"status": "FAILED"})).json()
    assert [e["id"] for e in failed["entries"]] == [populated["dead2"], populated["dead"]]
    assert failed == json_of(await admin.list_page(store, status=ScheduledCommandStatus.FAILED))

    by_type = (await client.get("/api/entries", params={"command_type": FAIL})).json()
    assert {e["id"] for e in by_type["entries"]} == {populated["dead"], populated["dead2"]}
    flow = (await client.get("/api/entries", params={"correlation_id": "flow-1"})).json()
    assert {e["id"] for e in flow["entries"]} == {populated["done"], populated["dead2"]}
    both = (await client.get("/api/entries", params={"correlation_id": "flow-1", "command_type": RECORD})).json()
    assert [e["id"] for e in both["entries"]] == [populated["done"]]

    pages: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = (await client.get("/api/entries", params={"limit": 2, "offset": offset})).json()
        assert page["limit"] == 2 and page["offset"] == offset and len(page["entries"]) <= 2
        pages += [e["id"] for e in page["entries"]]
        offset = page["next_offset"]
    everything = (await client.get("/api/entries", params={"limit": 500})).json()
    assert pages == [e["id"] for e in everything["entries"]] and len(pages) == 6
    assert everything["next_offset"] is None


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"status": "DONE"}, "DONE"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": 99999999999999999999}, "99999999999999999999"),
        ({"offset": 2**62 + 1}, str(2**62 + 1)),
        ({"limit": "many"}, "many"),
    ],
)
async def test_list_entries_refuses_bad_values_with_422(
    client: httpx.AsyncClient, params: dict[str, Any], named: str
) -> None:
    response = await client.get("/api/entries", params=params)
    assert response.status_code == 422
    assert named in response.text


async def test_show_entry_with_attempts_or_404(
    client: httpx.AsyncClient, store: ScheduledCommandStore, populated: dict[str, str]
) -> None:
    """GET /api/entries/{id}: the entry and its attempts (as ``show --json``); 404 naming an unknown id."""
    response = await client.get(f"/api/entries/{populated['dead']}")
    assert response.status_code == 200
    body = response.json()
    detail = await admin.entry_detail(store, populated["dead"])
    assert body == json_of(detail)
    assert body["entry"]["status"] == "FAILED" and "failure 1 of x" in body["entry"]["error_message"]
    assert [a["outcome"] for a in body["attempts"]] == ["failed"]

    missing = await client.get("/api/entries/no-such-id")
    assert missing.status_code == 404
    assert "no-such-id" in missing.json()["detail"]


async def test_cancel_pending_then_409_then_404(
    client: httpx.AsyncClient, store: ScheduledCommandStore, populated: dict[str, str]
) -> None:
    """POST .../cancel: 200 ``{"id", "cancelled": true}`` for a PENDING entry; 409 once it is not PENDING, 404 for
    an unknown id, each with the CLI's explanation."""
    entry_id = populated["later"]
    response = await client.post(f"/api/entries/{entry_id}/cancel")
    assert response.status_code == 200
    assert response.json() == {"id": entry_id, "cancelled": True, "running": False}
    entry = await store.get(entry_id)
    assert entry is not None and entry.status is ScheduledCommandStatus.CANCELLED

    again = await client.post(f"/api/entries/{entry_id}/cancel")
    assert again.status_code == 409
    assert again.json() == {"detail": f"cannot cancel {entry_id}: it is CANCELLED, not PENDING or WAITING or FAILED"}
    unknown = await client.post("/api/entries/nope/cancel")
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "cannot cancel nope: no such entry"}


async def test_cancel_dismisses_a_dead_letter(
    client: httpx.AsyncClient, store: ScheduledCommandStore, clock: ManualClock, populated: dict[str, str]
) -> None:
    """POST .../cancel on a FAILED entry dismisses it: CANCELLED at the dashboard's now, its error and attempts kept,
    out of the dead letters, no longer requeueable; a COMPLETED entry is refused with 409, as the CLI words it."""
    entry_id = populated["dead"]
    before = await client.get(f"/api/entries/{entry_id}")
    clock.advance(timedelta(minutes=5))
    response = await client.post(f"/api/entries/{entry_id}/cancel")
    assert response.status_code == 200
    assert response.json() == {"id": entry_id, "cancelled": True, "running": False}
    assert response.json() == json_of(admin.CancelResult(id=entry_id, cancelled=True))

    after = (await client.get(f"/api/entries/{entry_id}")).json()
    expected = before.json()
    expected["entry"] |= {"status": "CANCELLED", "completed_at": clock.now().isoformat().replace("+00:00", "Z")}
    assert after == expected  # error message, counts and attempts as they were
    assert "failure 1 of x" in after["entry"]["error_message"] and len(after["attempts"]) == 1
    overview = (await client.get("/api/overview")).json()
    assert overview["dead_letters_by_type"] == {FAIL: 1}
    assert (overview["counts"]["FAILED"], overview["counts"]["CANCELLED"]) == (1, 2)
    failed = (await client.get("/api/entries", params={"status": "FAILED"})).json()
    assert [e["id"] for e in failed["entries"]] == [populated["dead2"]]

    requeue = await client.post(f"/api/entries/{entry_id}/requeue")
    assert requeue.status_code == 409
    assert requeue.json()["detail"] == f"cannot requeue {entry_id}: it is CANCELLED, not FAILED"
    done = await client.post(f"/api/entries/{populated['done']}/cancel")
    assert done.status_code == 409
    assert done.json() == {
        "detail": f"cannot cancel {populated['done']}: it is COMPLETED, not PENDING or WAITING or FAILED"
    }
    entry = await store.get(populated["done"])
    assert entry is not None and entry.status is ScheduledCommandStatus.COMPLETED


async def test_requeue_one_dead_letter_then_it_runs(
    client: httpx.AsyncClient, scheduling_app: App, populated: dict[str, str]
) -> None:
    """POST .../requeue: a FAILED entry goes back to PENDING and runs again; 409 for one not FAILED; 404 unknown."""
    entry_id = populated["dead"]
    response = await client.post(f"/api/entries/{entry_id}/requeue")
    assert response.status_code == 200
    assert response.json() == {"requeued": [entry_id]}
    entry = await scheduling_app.store.get(entry_id)
    assert entry is not None and entry.status is ScheduledCommandStatus.PENDING and entry.retry_count == 0

    refused = await client.post(f"/api/entries/{entry_id}/requeue")
    assert refused.status_code == 409
    assert refused.json()["detail"] == f"cannot requeue {entry_id}: it is PENDING, not FAILED"
    assert (await client.post(f"/api/entries/{populated['done']}/requeue")).status_code == 409
    assert (await client.post("/api/entries/nope/requeue")).status_code == 404

    await scheduling_app.service.run_until_idle()
    detail = (await client.get(f"/api/entries/{entry_id}")).json()
    assert detail["entry"]["status"] == "FAILED"  # Fail fails again: a second attempt recorded
    assert len(detail["attempts"]) == 2


async def test_requeue_all_dead_letters_of_a_type_or_all(
    client: httpx.AsyncClient, scheduling_app: App, populated: dict[str, str]
) -> None:
    """POST /api/dead-letters/requeue: every FAILED entry of ``command_type``, or all; ``{"requeued": [...]}``."""
    none = await client.post("/api/dead-letters/requeue", json={"command_type": RECORD})
    assert none.status_code == 200 and none.json() == {"requeued": []}
    response = await client.post("/api/dead-letters/requeue", json={"command_type": FAIL})
    assert response.status_code == 200
    assert sorted(response.json()["requeued"]) == sorted([populated["dead"], populated["dead2"]])
    assert (await client.post("/api/dead-letters/requeue")).json() == {"requeued": []}
    counts = await scheduling_app.store.count_by_status()
    assert counts[ScheduledCommandStatus.FAILED] == 0


async def test_requeue_all_without_a_body(client: httpx.AsyncClient, populated: dict[str, str]) -> None:
    response = await client.post("/api/dead-letters/requeue")
    assert response.status_code == 200
    assert sorted(response.json()["requeued"]) == sorted([populated["dead"], populated["dead2"]])


async def test_purge_dry_run_then_by_status(
    client: httpx.AsyncClient, store: ScheduledCommandStore, clock: ManualClock, populated: dict[str, str]
) -> None:
    """POST /api/purge: ``older_than`` as the CLI reads it, statuses, dry_run; the ``purge --json`` shape."""
    recent = await client.post("/api/purge", json={"older_than": "1h", "dry_run": True})
    assert recent.status_code == 200
    assert recent.json()["count"] == 0

    clock.advance(timedelta(days=2))
    dry = (await client.post("/api/purge", json={"older_than": "1d", "dry_run": True})).json()
    assert dry == {
        "older_than": (clock.now() - timedelta(days=1)).isoformat().replace("+00:00", "Z"),
        "statuses": ["CANCELLED", "COMPLETED", "EXPIRED", "FAILED"],
        "dry_run": True,
        "count": 4,
    }
    failed = (await client.post("/api/purge", json={"older_than": "P1D", "statuses": ["FAILED"]})).json()
    assert failed["count"] == 2 and failed["statuses"] == ["FAILED"] and failed["dry_run"] is False
    assert await store.get(populated["dead"]) is None
    assert await store.get(populated["done"]) is not None


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"older_than": "soon"}, "'soon'"),
        ({"older_than": "-1d"}, "'-1d'"),
        ({"older_than": "99999999999d"}, "'99999999999d' is too long"),
        ({"older_than": "999999999d"}, "'999999999d' is too long"),
        ({"older_than": "P999999999D"}, "'P999999999D' is too long"),
        ({"older_than": "1" * 400 + "s"}, "is too long"),
        ({"older_than": "1d", "statuses": ["PENDING"]}, "PENDING cannot be purged"),
        ({"older_than": "1d", "statuses": ["GONE"]}, "GONE"),
        ({}, "older_than"),
    ],
)
async def test_purge_refuses_bad_values_with_422(
    client: httpx.AsyncClient, store: ScheduledCommandStore, populated: dict[str, str], body: Any, named: str
) -> None:
    response = await client.post("/api/purge", json=body)
    assert response.status_code == 422
    assert named in response.text
    assert (await store.count_by_status())[ScheduledCommandStatus.COMPLETED] == 1


async def test_recurring_list_pause_resume(
    client: httpx.AsyncClient, store: ScheduledCommandStore, clock: ManualClock, populated: dict[str, str]
) -> None:
    """GET /api/recurring (``recurring list --json``); POST pause and resume, with their CLI shapes; 404 unknown."""
    listed = (await client.get("/api/recurring")).json()
    assert listed == json_of(await admin.recurring_list(store))
    [report] = listed["schedules"]
    assert (report["name"], report["interval"], report["paused"]) == ("report", 3600.0, False)
    pending = await store.list_entries(status=ScheduledCommandStatus.PENDING, command_type=RECORD)
    [occurrence] = [e for e in pending if e.recurring_name == "report"]

    paused = await client.post("/api/recurring/report/pause")
    assert paused.status_code == 200
    assert paused.json()["name"] == "report" and paused.json()["paused"] is True
    assert paused.json()["cancelled"] == [occurrence.id]
    assert (await client.get("/api/recurring")).json()["schedules"][0]["paused"] is True

    resumed = await client.post("/api/recurring/report/resume")
    assert resumed.status_code == 200
    next_run = (clock.now() + timedelta(hours=1)).isoformat()
    assert resumed.json() == {"name": "report", "paused": False, "next_run_at": next_run}

    for action in ("pause", "resume"):
        missing = await client.post(f"/api/recurring/nope/{action}")
        assert missing.status_code == 404
        assert "'nope'" in missing.json()["detail"]


@pytest.mark.parametrize("name", ["reports/daily", "a/../b", "tenant/42/nightly report", "weird%2Fname"])
async def test_schedule_names_with_slashes_pause_and_resume(
    client: httpx.AsyncClient, store: ScheduledCommandStore, clock: ManualClock, name: str
) -> None:
    """A name with ``/`` (sent as ``%2F``, decoded before routing) reaches the schedule, as the pages' buttons
    send it."""
    now = clock.now()
    await store.upsert_schedule(
        StoredSchedule(
            name=name, command_type=RECORD, payload="{}", interval=timedelta(hours=1), created_at=now, updated_at=now
        )
    )
    await store.upsert_schedule(
        StoredSchedule(
            name="b", command_type=RECORD, payload="{}", interval=timedelta(hours=1), created_at=now, updated_at=now
        )
    )
    encoded = quote(name, safe="")
    paused = await client.post(f"/api/recurring/{encoded}/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["name"] == name and paused.json()["paused"] is True
    by_name = {s["name"]: s for s in (await client.get("/api/recurring")).json()["schedules"]}
    assert by_name[name]["paused"] is True and by_name["b"]["paused"] is False
    resumed = await client.post(f"/api/recurring/{encoded}/resume")
    assert resumed.status_code == 200 and resumed.json()["name"] == name and resumed.json()["paused"] is False
    missing = await client.post(f"/api/recurring/{quote(name + '/x', safe='')}/pause")
    assert missing.status_code == 404 and repr(name + "/x") in missing.json()["detail"]


async def test_a_schedule_that_does_not_load_is_listed_with_its_error(
    client: httpx.AsyncClient, store: ScheduledCommandStore, clock: ManualClock, populated: dict[str, str]
) -> None:
    """A stored schedule in a time zone this system does not know (or with invalid options) does not break the
    list: it is shown as stored with ``error``; valid ones have ``error`` None."""
    now = clock.now()
    for name, timezone, options in (("broken-zone", "Mars/Olympus_Mons", "{}"), ("broken-options", "UTC", "[1]")):
        await store.upsert_schedule(
            StoredSchedule(
                name=name,
                command_type=RECORD,
                payload="{}",
                cron="0 9 * * *",
                timezone=timezone,
                options_json=options,
                created_at=now,
                updated_at=now,
            )
        )
    response = await client.get("/api/recurring")
    assert response.status_code == 200
    listed = response.json()
    assert listed == json_of(await admin.recurring_list(store))
    by_name = {s["name"]: s for s in listed["schedules"]}
    assert set(by_name) == {"broken-options", "broken-zone", "report"}
    assert "Mars/Olympus_Mons" in by_name["broken-zone"]["error"] and by_name["broken-zone"]["timezone"] == (
        "Mars/Olympus_Mons"
    )
    assert by_name["broken-zone"]["cron"] == "0 9 * * *"
    assert by_name["broken-options"]["error"] and by_name["broken-options"]["options"] == json_of(ScheduleOptions())
    assert by_name["report"]["error"] is None and by_name["report"]["interval"] == 3600.0


async def test_openapi_describes_every_route_with_typed_bodies(client: httpx.AsyncClient) -> None:
    """/openapi.json lists every API route with its response schema; Swagger UI and ReDoc (CDN) are off."""
    document = (await client.get("/openapi.json")).json()
    paths = document["paths"]
    assert set(paths) == {
        "/api/overview",
        "/api/entries",
        "/api/entries/{entry_id}",
        "/api/entries/{entry_id}/cancel",
        "/api/entries/{entry_id}/requeue",
        "/api/entries/bulk",
        "/api/dead-letters/requeue",
        "/api/purge",
        "/api/recurring",
        "/api/recurring/{name}/pause",
        "/api/recurring/{name}/resume",
        "/api/workers",
        "/api/audit",
        "/api/queues",
        "/api/queues/{name}/pause",
        "/api/queues/{name}/resume",
        "/api/queues/{name}/limits",
        "/api/outcomes",
        "/api/recurring/{name}/occurrences",
        "/api/recurring/{name}/run-now",
    }
    ok = paths["/api/overview"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/StoreOverview"}
    assert "throughput" in document["components"]["schemas"]["StoreOverview"]["properties"]
    cancel = paths["/api/entries/{entry_id}/cancel"]["post"]["responses"]
    assert {"200", "401", "403", "404", "409"} <= set(cancel)
    assert (await client.get("/docs")).status_code == 404
    assert (await client.get("/redoc")).status_code == 404


async def test_metrics_expose_entries_per_status(client: httpx.AsyncClient, populated: dict[str, str]) -> None:
    """GET /metrics: Prometheus text with the store's entries per status, refreshed at each scrape."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'cqrs_scheduling_entries{status="failed"} 2.0' in response.text
    await client.post("/api/dead-letters/requeue")
    assert 'cqrs_scheduling_entries{status="failed"} 0.0' in (await client.get("/metrics")).text


async def test_api_on_postgresql(postgresql_store: SqlStore, clock: ManualClock) -> None:
    """The same routes over PostgreSQL: overview with throughput, list, requeue."""
    from scheduling_app import make_app

    from scheduling.web import DashboardSettings, create_dashboard_app

    app = make_app(store=postgresql_store, clock=clock)
    ids = await populate(app)
    dashboard: FastAPI = create_dashboard_app(postgresql_store, settings=DashboardSettings(token=TOKEN), clock=clock)
    async with http_client(dashboard, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        overview = (await client.get("/api/overview")).json()
        assert overview["throughput"]["totals"] == {"CANCELLED": 1, "COMPLETED": 1, "EXPIRED": 0, "FAILED": 2}
        assert overview == json_of(await admin.overview(postgresql_store, clock.now()))
        failed = (await client.get("/api/entries", params={"status": "FAILED"})).json()
        assert {e["id"] for e in failed["entries"]} == {ids["dead"], ids["dead2"]}
        assert (await client.post(f"/api/entries/{ids['dead']}/requeue")).json() == {"requeued": [ids["dead"]]}
        dismissed = await client.post(f"/api/entries/{ids['dead2']}/cancel")
        assert dismissed.json() == {"id": ids["dead2"], "cancelled": True, "running": False}
        entry = await postgresql_store.get(ids["dead2"])
        assert entry is not None and entry.status is ScheduledCommandStatus.CANCELLED


async def test_cancel_running_asks_the_worker_and_plain_cancel_refuses_it(
    client: httpx.AsyncClient, store: ScheduledCommandStore, clock: ManualClock, populated: dict[str, str]
) -> None:
    """POST .../cancel?running=true on a PROCESSING entry stores the request for its worker (``running`` true);
    without ``running`` a PROCESSING entry is refused with 409, naming the statuses each form acts on."""
    entry_id = populated["later"]
    claimed = await store.claim_due(
        now=clock.now() + timedelta(days=365), limit=100, worker_id="w", lease_duration=timedelta(minutes=1)
    )
    assert entry_id in {entry.id for entry in claimed}
    plain = await client.post(f"/api/entries/{entry_id}/cancel")
    assert plain.status_code == 409
    assert plain.json() == {"detail": f"cannot cancel {entry_id}: it is PROCESSING, not PENDING or WAITING or FAILED"}
    response = await client.post(f"/api/entries/{entry_id}/cancel", params={"running": "true"})
    assert response.status_code == 200
    assert response.json() == json_of(admin.CancelResult(id=entry_id, cancelled=True, running=True))
    entry = await store.get(entry_id)
    assert entry is not None and entry.status is ScheduledCommandStatus.PROCESSING
    assert entry.cancel_requested_at == clock.now()
    done = populated["done"]
    finished = await client.post(f"/api/entries/{done}/cancel", params={"running": "true"})
    assert finished.status_code == 409
    assert finished.json() == {
        "detail": f"cannot cancel {done}: it is COMPLETED, not PENDING or WAITING or FAILED or PROCESSING"
    }
