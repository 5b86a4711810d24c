"""The admin API's entries search (``GET /api/entries``: id prefix, error text, time ranges, total) and bulk actions
(``POST /api/entries/bulk``: a selection or a filter result, the confirmed count, batches, the audit trail)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from scheduling_app import App, Fail, Record

from scheduling import ManualClock, ScheduleOptions, admin
from stores import ScheduledCommandStore
from stores.entries import ScheduledCommandStatus

FAIL = "scheduling_app.Fail"


async def dead_letters(app: App, n: int, key: str = "k") -> list[str]:
    ids = [await app.scheduler.schedule(Fail(key=f"{key}{i}"), ScheduleOptions(max_retries=0)) for i in range(n)]
    await app.service.run_until_idle()
    return ids


async def statuses(store: ScheduledCommandStore, ids: list[str]) -> list[str]:
    entries = [await store.get(entry_id) for entry_id in ids]
    return [entry.status.value if entry is not None else "?" for entry in entries]


async def test_search_by_error_id_prefix_and_finished_range_with_a_total(
    client: httpx.AsyncClient, scheduling_app: App, clock: ManualClock
) -> None:
    """Error text (ignoring case), an id prefix and a finished range narrow the list; ``total`` counts them."""
    early = await dead_letters(scheduling_app, 2, "early")
    start = clock.now()
    clock.advance(timedelta(minutes=5))
    late = await dead_letters(scheduling_app, 3, "late")
    await scheduling_app.scheduler.schedule(Record(value="fine"))
    body = (await client.get("/api/entries", params={"error": "VALUEERROR: FAILURE 1 OF"})).json()
    assert sorted(e["id"] for e in body["entries"]) == sorted(early + late)
    assert (body["total"], body["total_exact"]) == (5, True)

    body = (await client.get("/api/entries", params={"id_prefix": late[1][:8]})).json()
    assert [e["id"] for e in body["entries"]] == [late[1]] and body["total"] == 1

    after = (start + timedelta(minutes=1)).isoformat()
    body = (await client.get("/api/entries", params={"finished_after": after, "status": "FAILED"})).json()
    assert [e["id"] for e in body["entries"]] == late[::-1] and body["total"] == 3
    everything = (await client.get("/api/entries", params={"limit": 2})).json()
    assert (everything["total"], everything["total_exact"], len(everything["entries"])) == (6, True, 2)


async def test_bad_search_values_are_422_naming_the_value(client: httpx.AsyncClient) -> None:
    for params, words in (
        ({"created_after": "2026-03-01T12:00:00"}, "created_after '2026-03-01T12:00:00' needs a UTC offset"),
        ({"due_before": "yesterday"}, "due_before 'yesterday' is not an ISO 8601 time"),
        (
            {"finished_after": "2026-03-02T00:00:00Z", "finished_before": "2026-03-01T00:00:00Z"},
            "finished_after (2026-03-02T00:00:00+00:00) must be earlier than finished_before",
        ),
    ):
        response = await client.get("/api/entries", params=params)
        assert response.status_code == 422 and words in response.json()["detail"], response.text


async def test_a_filter_result_is_acted_on_only_with_the_confirmed_count(
    client: httpx.AsyncClient, scheduling_app: App, store: ScheduledCommandStore
) -> None:
    """A dry run counts; more entries than confirmed is a 409 that changes nothing; ``limit`` runs one batch and
    says how many remain; each batch leaves an audit record naming its entries and the filter."""
    ids = await dead_letters(scheduling_app, 3)
    request = {"action": "requeue", "filter": {"command_type": FAIL}}
    preview = (await client.post("/api/entries/bulk", json={**request, "dry_run": True})).json()
    assert (preview["matched"], preview["done"], preview["dry_run"]) == (3, [], True)

    refused = await client.post("/api/entries/bulk", json={**request, "expected_count": 2})
    assert refused.status_code == 409
    assert refused.json()["detail"].startswith("3 entries match now, more than the 2 confirmed: nothing was done")
    assert await statuses(store, ids) == ["FAILED"] * 3
    missing = await client.post("/api/entries/bulk", json=request)
    assert missing.status_code == 422 and "expected" in missing.json()["detail"]

    first = (await client.post("/api/entries/bulk", json={**request, "expected_count": 3, "limit": 2})).json()
    assert (first["done"], first["remaining"], first["batches"]) == (ids[:2], 1, 1)
    rest = (await client.post("/api/entries/bulk", json={**request, "expected_count": 1})).json()
    assert (rest["done"], rest["remaining"]) == (ids[2:], 0)
    assert await statuses(store, ids) == ["PENDING"] * 3

    records = (await client.get("/api/audit")).json()["records"]
    bulk = [r for r in records if r["action"] == "bulk_requeue"]
    assert [r["entry_ids"] for r in bulk] == [ids[2:], ids[:2]]  # newest first
    assert all(r["target"].startswith(f"command_type={FAIL}") and r["source"] == "api" for r in bulk)


async def test_a_selection_acts_on_entries_in_the_action_status_only(
    client: httpx.AsyncClient, scheduling_app: App, store: ScheduledCommandStore
) -> None:
    """Cancel takes PENDING entries of a selection; a FAILED one and an unknown id are refused, not changed."""
    pending = [
        await scheduling_app.scheduler.schedule(Record(value=str(i)), ScheduleOptions(delay=timedelta(days=1)))
        for i in range(2)
    ]
    [dead] = await dead_letters(scheduling_app, 1)
    body = (
        await client.post("/api/entries/bulk", json={"action": "cancel", "ids": [*pending, dead, "no-such-entry"]})
    ).json()
    assert (body["done"], body["refused"]) == (pending, [dead, "no-such-entry"])
    assert await statuses(store, [*pending, dead]) == ["CANCELLED", "CANCELLED", "FAILED"]
    dismissed = (await client.post("/api/entries/bulk", json={"action": "dismiss", "ids": [dead]})).json()
    assert dismissed["done"] == [dead]
    assert (await store.get(dead)) is not None
    entry = await store.get(dead)
    assert entry is not None and entry.status is ScheduledCommandStatus.CANCELLED


async def test_bulk_requests_that_cannot_be_done_are_refused(client: httpx.AsyncClient) -> None:
    for body, status, words in (
        ({"action": "requeue"}, 422, "give either ids"),
        ({"action": "requeue", "ids": [], "filter": {}}, 422, "give either ids"),
        ({"action": "cancel", "filter": {"status": "FAILED"}, "dry_run": True}, 422, "cancel acts on PENDING"),
        ({"action": "requeue", "filter": {"colour": "red"}, "dry_run": True}, 422, "unknown filter field 'colour'"),
        ({"action": "explode", "ids": ["x"]}, 422, "requeue"),
    ):
        response = await client.post("/api/entries/bulk", json=body)
        assert response.status_code == status and words in response.text, response.text


async def test_the_page_says_more_than_the_limit_and_keeps_the_search_in_its_links(
    browser: httpx.AsyncClient, client: httpx.AsyncClient, scheduling_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``COUNT_LIMIT`` a search says "More than N" (the API: ``total_exact`` false); the page jump and the
    pager keep the search; a bad value is a 422 page naming it; the bulk section carries the search as the API
    names it."""
    monkeypatch.setattr(admin, "COUNT_LIMIT", 2)
    await dead_letters(scheduling_app, 3)
    body = (await client.get("/api/entries", params={"error": "failure"})).json()
    assert (body["total"], body["total_exact"]) == (2, False)
    assert (await client.get("/api/entries")).json()["total_exact"] is True  # no filter: the counts per status

    page = await browser.get("/entries", params={"error": "failure", "limit": 1, "page": 2})
    assert page.status_code == 200
    assert "More than 2 entries match (counting stops there)." in page.text
    assert "Entries 2 to 2" in page.text and "page 2</span>" in page.text
    assert '<input type="hidden" name="error" value="failure">' in page.text
    assert 'href="/entries?error=failure&amp;limit=1&amp;offset=2"' in page.text  # next: the page number dropped
    assert 'data-filter="{&#34;error&#34;: &#34;failure&#34;}"' in page.text

    bad = await browser.get("/entries", params={"created_after": "2026-13-01T00:00"})
    assert bad.status_code == 422 and "created_after &#39;2026-13-01T00:00&#39; is not an ISO 8601 time" in bad.text
