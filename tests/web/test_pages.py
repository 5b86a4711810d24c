"""The dashboard's HTML pages over a real SQLite store, through real HTTP (httpx against the ASGI app).

The store is filled by the real scheduler and worker service on a ``ManualClock``: completed entries, dead letters
with their attempt history, pending ones, and a recurring schedule. The pages are parsed with the standard library's
HTML parser, and checked for what they show, for the live-region fragments, for read-only mode, for URLs relative to
the mount path, and for accessibility basics (labels, one h1, a main landmark, table headers, button text).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from queueless_store import QueuelessStore
from scheduling_app import START, Add, App, Fail, Record, make_app

from scheduling import ScheduledCommandStatus, ScheduleOptions
from scheduling.admin import OutcomeBucket, OutcomeHistory
from scheduling.web import DashboardSettings, create_dashboard_app
from scheduling.web._charts import outcome_chart
from scheduling.web.pages import format_duration
from stores.outcomes import OUTCOMES
from stores.queues import QueueLimits, RateLimit
from stores.schedules import StoredSchedule
from stores.sql import SqlStore
from stores.workers import StoredWorker

TOKEN = "page-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PAGES = ["/", "/entries", "/dead-letters", "/recurring", "/queues", "/workers", "/audit"]

# -- a small DOM from the standard library's parser -------------------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    parent: Element | None = None
    children: list[Element | str] = field(default_factory=list)

    def text(self) -> str:
        parts = [c if isinstance(c, str) else c.text() for c in self.children]
        return " ".join(" ".join(parts).split())

    def iter(self) -> Iterator[Element]:
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()

    def find_all(self, tag: str, **attrs: str) -> list[Element]:
        return [
            e
            for e in self.iter()
            if e.tag == tag and all(e.attrs.get(k.rstrip("_").replace("_", "-")) == v for k, v in attrs.items())
        ]

    def by_id(self, element_id: str) -> Element | None:
        return next((e for e in self.iter() if e.attrs.get("id") == element_id), None)

    def ancestors(self) -> Iterator[Element]:
        node = self.parent
        while node is not None:
            yield node
            node = node.parent


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.current = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs}, parent=self.current)
        self.current.children.append(element)
        if tag not in VOID:
            self.current = element

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.current.children.append(Element(tag, {k: v or "" for k, v in attrs}, parent=self.current))

    def handle_endtag(self, tag: str) -> None:
        node: Element | None = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        assert node is not None and node.parent is not None, f"unbalanced </{tag}>"
        self.current = node.parent

    def handle_data(self, data: str) -> None:
        self.current.children.append(data)


def parse(html: str) -> Element:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    assert builder.current is builder.root, f"unclosed <{builder.current.tag}>"
    return builder.root


# -- fixtures ---------------------------------------------------------------------------------------------------


@dataclass
class Filled:
    """The application that filled the store, and the ids of what it holds."""

    app: App
    completed: list[str]
    failed: list[str]
    pending: list[str]


@pytest.fixture
async def filled(tmp_path: Path) -> AsyncIterator[Filled]:
    """A SQLite file store with 3 completed, 2 dead-lettered (after 2 attempts each) and 3 pending entries (one the
    next occurrence of a recurring schedule); the ManualClock then stands 10 minutes after the failures."""
    store = SqlStore(f"sqlite:///{tmp_path / 'pages.db'}")
    await store.open()
    app = make_app(store=store)
    scheduler = app.scheduler
    completed = [
        await scheduler.schedule(Record(value=f"r{i}"), ScheduleOptions(correlation_id="flow-1")) for i in range(2)
    ]
    completed.append(await scheduler.schedule(Add(a=2, b=3), ScheduleOptions(priority=5)))
    failed = [
        await scheduler.schedule(Fail(key=f"f{i}"), ScheduleOptions(max_retries=1, correlation_id="flow-2"))
        for i in range(2)
    ]
    await app.service.run_until_idle()
    app.clock.advance(timedelta(minutes=5))  # past the retry backoff
    await app.service.run_until_idle()
    pending = [
        await scheduler.schedule(Record(value="later"), ScheduleOptions(delay=timedelta(hours=1))),
        await scheduler.schedule(Record(value="overdue"), ScheduleOptions(delay=timedelta(minutes=1))),
    ]
    await scheduler.schedule_recurring(
        "nightly-report", Record(value="report"), cron="0 3 * * *", timezone="Europe/Paris"
    )
    occurrences = await store.list_entries(status=ScheduledCommandStatus.PENDING, limit=10)
    pending += [entry.id for entry in occurrences if entry.recurring_name == "nightly-report"]
    app.clock.advance(timedelta(minutes=5))
    try:
        yield Filled(app, completed, failed, pending)
    finally:
        await store.close()


def _client(dashboard: FastAPI, base_url: str = "http://testserver") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=dashboard), base_url=base_url, headers=AUTH)


@pytest.fixture
async def client(filled: Filled) -> AsyncIterator[httpx.AsyncClient]:
    dashboard = create_dashboard_app(
        filled.app.store, settings=DashboardSettings(token=TOKEN, page_size=50), clock=filled.app.clock
    )
    async with _client(dashboard) as http:
        yield http


async def get_page(client: httpx.AsyncClient, path: str, status: int = 200) -> Element:
    response = await client.get(path, headers={"Accept": "text/html"})
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    return parse(response.text)


def row_ids(doc: Element, prefix: str) -> list[str]:
    return [
        row.attrs["id"].removeprefix(f"{prefix}-row-")
        for row in doc.iter()
        if row.attrs.get("id", "").startswith(f"{prefix}-row-")
    ]


def action_buttons(doc: Element) -> list[Element]:
    return [b for b in doc.find_all("button") if "data-action" in b.attrs]


# -- pages ------------------------------------------------------------------------------------------------------


async def test_overview_shows_counts_timing_throughput_and_dead_letters(
    client: httpx.AsyncClient, filled: Filled
) -> None:
    doc = await get_page(client, "/")
    counts = {
        a.attrs["id"].removeprefix("count-"): a.text()
        for a in doc.find_all("a")
        if a.attrs.get("id", "").startswith("count-")
    }
    assert counts == {
        "PENDING": "3",
        "PROCESSING": "0",
        "COMPLETED": "3",
        "FAILED": "2",
        "CANCELLED": "0",
        "EXPIRED": "0",
        "WAITING": "0",
    }
    # The status is written out next to its number: colour only repeats it.
    card_terms = [dt.text() for dt in doc.find_all("dt")]
    assert {"PENDING", "COMPLETED", "FAILED", "Total"} <= set(card_terms)
    total = doc.by_id("count-total")
    assert total is not None and total.text() == "8"

    overdue = doc.by_id("oldest-overdue")
    assert overdue is not None and "late by" in overdue.text()
    overdue_time = overdue.find_all("time")[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", overdue_time.attrs["datetime"])
    assert overdue_time.text() == overdue_time.attrs["datetime"]

    svg = doc.find_all("svg")[0]
    assert svg.attrs["role"] == "img" and svg.attrs["aria-labelledby"]
    for label_id in svg.attrs["aria-labelledby"].split():
        assert doc.by_id(label_id) is not None
    outcome_rows = doc.by_id("outcomes-details")
    assert outcome_rows is not None
    per_outcome: dict[str, int] = {}
    for td in outcome_rows.find_all("td"):
        per_outcome[td.attrs["data-outcome"]] = per_outcome.get(td.attrs["data-outcome"], 0) + int(td.text())
    # All in the last hour: both dead letters were retried once first.
    assert per_outcome == {"completed": 3, "retried": 2, "failed": 2, "expired": 0}
    totals = {o: doc.by_id(f"outcome-total-{o}") for o in per_outcome}
    assert {o: t.text() for o, t in totals.items() if t is not None} == {o: str(c) for o, c in per_outcome.items()}
    segments = svg.find_all("rect")
    assert segments
    assert {r.attrs["class"] for r in segments} <= {"bar seg-completed", "bar seg-retried", "bar seg-failed"}
    failures = doc.by_id("failures-by-type")
    assert failures is not None
    assert any("scheduling_app.Fail" in tr.text() for tr in failures.find_all("tr"))

    dead = [tr.text() for table in doc.find_all("table") for tr in table.find_all("tr")]
    assert any("scheduling_app.Fail" in row and row.endswith("2") for row in dead), dead


async def test_entries_lists_newest_first_with_filters(client: httpx.AsyncClient, filled: Filled) -> None:
    doc = await get_page(client, "/entries")
    everything = row_ids(doc, "entries")
    assert sorted(everything) == sorted(filled.completed + filled.failed + filled.pending)

    doc = await get_page(client, "/entries?status=FAILED&command_type=&correlation_id=")
    assert sorted(row_ids(doc, "entries")) == sorted(filled.failed)
    status_select = doc.by_id("filter-status")
    assert status_select is not None
    assert [o.attrs["value"] for o in status_select.find_all("option") if "selected" in o.attrs] == ["FAILED"]

    doc = await get_page(client, "/entries?correlation_id=flow-1")
    assert sorted(row_ids(doc, "entries")) == sorted(filled.completed[:2])
    doc = await get_page(client, "/entries?command_type=scheduling_app.Add")
    assert row_ids(doc, "entries") == [filled.completed[2]]
    doc = await get_page(client, "/entries?status=completed&correlation_id=nobody")
    assert row_ids(doc, "entries") == []
    assert "No entries." in doc.text()

    doc = await get_page(client, "/entries?status=SLEEPING", status=422)
    assert "'SLEEPING'" in doc.text() and "PENDING" in doc.text()


async def test_entries_pages_with_next_and_previous_links(client: httpx.AsyncClient, filled: Filled) -> None:
    seen: list[str] = []
    url: str | None = "/entries?limit=3"
    pages = 0
    while url is not None:
        doc = await get_page(client, url)
        ids = row_ids(doc, "entries")
        assert 0 < len(ids) <= 3
        seen += ids
        shown = doc.by_id("page-range")
        assert shown is not None and shown.text() == f"Entries {len(seen) - len(ids) + 1} to {len(seen)}"
        previous = doc.by_id("page-previous")
        assert (previous is None) == (pages == 0)
        following = doc.by_id("page-next")
        url = following.attrs["href"] if following is not None else None
        if url is not None:
            assert "limit=3" in url and f"offset={(pages + 1) * 3}" in url
        pages += 1
    assert pages == 3
    assert sorted(seen) == sorted(filled.completed + filled.failed + filled.pending)
    assert len(set(seen)) == len(seen)


async def test_entry_detail_shows_payload_attempts_and_error(client: httpx.AsyncClient, filled: Filled) -> None:
    entry_id = filled.failed[0]
    doc = await get_page(client, f"/entries/{entry_id}")
    assert entry_id in doc.find_all("h1")[0].text()
    status = doc.by_id("entry-status")
    assert status is not None and status.attrs["data-status"] == "FAILED" and "FAILED" in status.text()
    payload = doc.by_id("entry-payload")
    assert payload is not None and '"key": "f0"' in payload.text()
    error = doc.by_id("entry-error")
    assert error is not None and "ValueError: failure 2 of f0" in error.text()
    attempts = doc.by_id("attempts")
    assert attempts is not None
    body_rows = attempts.find_all("tbody")[0].find_all("tr")
    assert [row.find_all("th")[0].text() for row in body_rows] == ["1", "2"]
    assert all("worker-1" in row.text() and "failed" in row.text() for row in body_rows)
    assert [h.text() for h in attempts.find_all("thead")[0].find_all("th")] == [
        "Attempt",
        "Worker",
        "Started",
        "Finished",
        "Outcome",
        "Error",
    ]
    retries = doc.by_id("entry-retries")
    assert retries is not None
    assert retries.text() == "1 allowed (up to 2 attempts); 2 failed since scheduled or requeued; 2 attempts in all"

    result = await get_page(client, f"/entries/{filled.completed[2]}")
    shown = result.by_id("entry-result")
    assert shown is not None and shown.text() == "5"


async def test_unknown_entry_is_a_404_page(client: httpx.AsyncClient) -> None:
    doc = await get_page(client, "/entries/no-such-id", status=404)
    assert doc.find_all("h1")[0].text() == "Entry not found"
    assert "'no-such-id'" in doc.text()
    fragment = await client.get("/entries/no-such-id?fragment=entry")
    assert fragment.status_code == 404


async def test_dead_letters_offer_requeue_cancel_and_requeue_all_of_a_type(
    client: httpx.AsyncClient, filled: Filled
) -> None:
    doc = await get_page(client, "/dead-letters")
    assert sorted(row_ids(doc, "dead")) == sorted(filled.failed)
    buttons = {b.attrs["id"]: b for b in action_buttons(doc)}
    assert set(buttons) == {f"dead-{a}-{i}" for a in ("requeue", "cancel") for i in filled.failed}
    for entry_id in filled.failed:
        button = buttons[f"dead-requeue-{entry_id}"]
        assert button.attrs["data-action"] == f"/api/entries/{entry_id}/requeue"
        assert button.text() == f"Requeue entry {entry_id}"
        # Cancel dismisses the dead letter; its accessible name says which entry, beside Requeue in the same row.
        cancel = buttons[f"dead-cancel-{entry_id}"]
        assert cancel.attrs["data-action"] == f"/api/entries/{entry_id}/cancel"
        assert cancel.text() == f"Cancel entry {entry_id}"
        assert cancel.attrs["data-done"] == f"Cancelled entry {entry_id}."
        row = doc.by_id(f"dead-row-{entry_id}")
        assert row is not None
        assert any(a is row for a in cancel.ancestors()) and any(a is row for a in button.ancestors())
    # Requeueing a whole type is not one click: a link to the Entries page, which states the count and asks first.
    bulk = doc.by_id("requeue-type-1")
    assert bulk is not None and bulk.tag == "a"
    assert bulk.attrs["href"] == "/entries?status=FAILED&command_type=scheduling_app.Fail#requeue-all"
    assert "Requeue all failed of this type" in bulk.text()
    assert "Cancelling dismisses an entry" in doc.text()


async def test_a_dismissed_dead_letter_leaves_the_dead_letter_page(client: httpx.AsyncClient, filled: Filled) -> None:
    """After its Cancel button's POST, the entry is gone from the dead letters (page and fragment) and its page shows
    it CANCELLED with its error and both attempts, and no buttons."""
    dismissed, kept = filled.failed
    doc = await get_page(client, "/dead-letters")
    cancel = doc.by_id(f"dead-cancel-{dismissed}")
    assert cancel is not None
    response = await client.post(cancel.attrs["data-action"])
    assert response.status_code == 200 and response.json() == {"id": dismissed, "cancelled": True, "running": False}

    fragment = parse((await client.get("/dead-letters?fragment=dead_letters")).text)
    assert row_ids(fragment, "dead") == [kept]
    assert fragment.by_id(f"dead-cancel-{dismissed}") is None
    detail = await get_page(client, f"/entries/{dismissed}")
    status = detail.by_id("entry-status")
    assert status is not None and status.attrs["data-status"] == "CANCELLED"
    error = detail.by_id("entry-error")
    assert error is not None and "ValueError: failure 2 of f0" in error.text()
    attempts = detail.by_id("attempts")
    assert attempts is not None and len(attempts.find_all("tbody")[0].find_all("tr")) == 2
    assert action_buttons(detail) == []


async def test_pending_entries_offer_cancel_and_finished_ones_nothing(
    client: httpx.AsyncClient, filled: Filled
) -> None:
    doc = await get_page(client, "/entries")
    ids = {b.attrs["id"] for b in action_buttons(doc)}
    assert ids == {f"entries-cancel-{i}" for i in [*filled.pending, *filled.failed]} | {
        f"entries-requeue-{i}" for i in filled.failed
    }
    detail = await get_page(client, f"/entries/{filled.pending[0]}")
    (cancel,) = action_buttons(detail)
    assert cancel.attrs["data-action"] == f"/api/entries/{filled.pending[0]}/cancel"
    assert action_buttons(await get_page(client, f"/entries/{filled.completed[0]}")) == []


async def test_failed_entries_offer_requeue_and_cancel_in_the_list_and_on_their_page(
    client: httpx.AsyncClient, filled: Filled
) -> None:
    entry_id = filled.failed[0]
    doc = await get_page(client, "/entries?status=FAILED")
    row = doc.by_id(f"entries-row-{entry_id}")
    assert row is not None
    assert [(b.attrs["id"], b.text()) for b in action_buttons(row)] == [
        (f"entries-requeue-{entry_id}", f"Requeue entry {entry_id}"),
        (f"entries-cancel-{entry_id}", f"Cancel entry {entry_id}"),
    ]
    detail = await get_page(client, f"/entries/{entry_id}")
    requeue, cancel = action_buttons(detail)
    assert (requeue.attrs["id"], requeue.attrs["data-action"]) == ("detail-requeue", f"/api/entries/{entry_id}/requeue")
    assert (cancel.attrs["id"], cancel.attrs["data-action"]) == ("detail-cancel", f"/api/entries/{entry_id}/cancel")
    assert cancel.text() == "Cancel this entry"


async def test_recurring_page_shows_schedule_with_pause(client: httpx.AsyncClient, filled: Filled) -> None:
    doc = await get_page(client, "/recurring")
    (row,) = [r for r in doc.find_all("tr") if r.attrs.get("data-name") == "nightly-report"]
    text = row.text()
    assert "cron 0 3 * * *" in text and "Europe/Paris" in text and "Active" in text
    assert row.find_all("time"), "the next run is shown as a <time>"
    assert "none yet" in row.text(), "no occurrence has finished: no last outcome"
    run_now, pause = action_buttons(row)
    assert run_now.attrs["data-action"] == "/api/recurring/nightly-report/run-now"
    assert pause.attrs["data-action"] == "/api/recurring/nightly-report/pause"

    await filled.app.scheduler.pause_recurring("nightly-report")
    doc = await get_page(client, "/recurring?fragment=recurring")
    (row,) = [r for r in doc.find_all("tr") if r.attrs.get("data-name") == "nightly-report"]
    assert "Paused" in row.text()
    _, resume = action_buttons(row)
    assert resume.attrs["data-action"] == "/api/recurring/nightly-report/resume"


async def test_run_now_adds_one_occurrence_that_the_schedule_page_lists_with_its_outcome(
    client: httpx.AsyncClient, filled: Filled
) -> None:
    """Run now through the API adds an occurrence due now (audited; twice in a second adds one); a worker runs it;
    the schedule's page lists it COMPLETED and the list shows COMPLETED as the last outcome."""
    response = await client.post("/api/recurring/nightly-report/run-now")
    assert response.status_code == 200, response.text
    first = response.json()
    assert first["created"] is True
    again = (await client.post("/api/recurring/nightly-report/run-now")).json()
    assert again == first | {"created": False}
    assert (await client.post("/api/recurring/nobody/run-now")).status_code == 404
    [record] = [r for r in (await client.get("/api/audit")).json()["records"] if r["action"] == "run-now"]
    assert (record["target"], record["entry_ids"]) == ("nightly-report", [first["id"]])

    await filled.app.service.run_until_idle()
    doc = await get_page(client, "/recurring/nightly-report")
    row = doc.by_id(f"occurrence-row-{first['id']}")
    assert row is not None and row.attrs["data-status"] == "COMPLETED"
    outcome = doc.by_id("schedule-last-outcome")
    assert outcome is not None and "COMPLETED" in outcome.text()
    listed = (await client.get("/api/recurring/nightly-report/occurrences")).json()
    assert listed["occurrences"][0]["id"] == first["id"] and listed["schedule"]["last_outcome"] == "COMPLETED"
    doc = await get_page(client, "/recurring")
    (row,) = [r for r in doc.find_all("tr") if r.attrs.get("data-name") == "nightly-report"]
    assert "COMPLETED" in row.text()
    missing = await client.get("/recurring/nobody")
    assert missing.status_code == 404


async def test_queues_page_shows_each_queue_with_pause_and_resume(client: httpx.AsyncClient, filled: Filled) -> None:
    """Depth, running, state and limits per queue; Pause posts to the queue's API route, and once paused (by
    anyone) the row says so and offers Resume; the overview links to the page."""
    overview = await get_page(client, "/")
    link = overview.by_id("queues-link")
    assert link is not None and link.attrs["href"] == "/queues"
    await filled.app.store.set_queue_limits("emails", QueueLimits(max_running=4, rate=RateLimit(count=100, per=60)))
    doc = await get_page(client, "/queues")
    rows = {r.attrs["data-name"]: r for r in doc.find_all("tr") if "data-name" in r.attrs}
    assert set(rows) == {"default", "emails"}
    # 3 PENDING: two plain ones and the recurring schedule's next occurrence.
    assert rows["default"].text().split()[:6] == ["default", "Active", "3", "0", "none", "none"]
    assert "4" in rows["emails"].text() and "100 per 1 min" in rows["emails"].text()
    (pause,) = action_buttons(rows["default"])
    assert pause.attrs["data-action"] == "/api/queues/default/pause" and pause.text() == "Pause queue default"

    await filled.app.scheduler.pause_queue("default")
    fragment = parse((await client.get("/queues?fragment=queues")).text)
    (row,) = [r for r in fragment.find_all("tr") if r.attrs.get("data-name") == "default"]
    assert row.attrs["data-paused"] == "true" and "Paused" in row.text()
    (resume,) = action_buttons(row)
    assert resume.attrs["data-action"] == "/api/queues/default/resume"


async def test_queues_page_on_a_store_without_queues_says_so(filled: Filled) -> None:
    """A store without queues: the page shows a one-line notice, not an error."""
    async with QueuelessStore() as store:
        dashboard = create_dashboard_app(store, settings=DashboardSettings(token=TOKEN), clock=filled.app.clock)
        async with _client(dashboard) as client:
            doc = await get_page(client, "/queues")
    notice = doc.by_id("queues-unsupported")
    assert notice is not None and "does not support listing queues" in notice.text()
    assert not doc.find_all("table")


async def test_the_entry_page_and_the_audit_page_show_operator_actions(
    client: httpx.AsyncClient, filled: Filled
) -> None:
    """A requeue through the API shows on the entry's page and on the Audit page, linking the entry; an entry no one
    acted on says so."""
    entry_id = filled.failed[0]
    assert (await client.post(f"/api/entries/{entry_id}/requeue")).status_code == 200
    filled.app.clock.advance(timedelta(seconds=1))
    assert (await client.post("/api/recurring/nightly-report/pause")).status_code == 200

    page = await get_page(client, f"/entries/{entry_id}")
    table = page.by_id("entry-audit")
    assert table is not None
    [row] = table.find_all("tr", data_action="requeue")
    assert "token (api)" in row.text() and "127.0.0.1" in row.text()
    untouched = (await get_page(client, f"/entries/{filled.failed[1]}")).by_id("entry-audit")
    assert untouched is not None and "No operator action recorded." in untouched.text()

    audit = await get_page(client, "/audit")
    rows = [r for r in audit.find_all("tr") if "data-action" in r.attrs]
    assert [r.attrs["data-action"] for r in rows] == ["pause", "requeue"]
    assert "nightly-report" in rows[0].text()
    [link] = rows[1].find_all("a")
    assert link.attrs["href"] == f"/entries/{entry_id}" and link.attrs["title"] == entry_id
    first = await get_page(client, "/audit?limit=1")
    older = first.by_id("audit-older")
    assert older is not None
    second = await get_page(client, older.attrs["href"])
    assert [r.attrs["data-action"] for r in second.find_all("tr") if "data-action" in r.attrs] == ["requeue"]


async def test_entries_show_short_ids_finished_at_duration_and_earlier_errors_as_history(
    client: httpx.AsyncClient, filled: Filled
) -> None:
    """Short ids (the full one on hover), finished-at and duration columns; an entry that completed after a retry
    shows its old error as history, in the list and on its page, never as its current error."""
    app = filled.app
    recovered = await app.scheduler.schedule(Fail(key="once", times=1), ScheduleOptions(max_retries=2))
    await app.service.run_until_idle()
    app.clock.advance(timedelta(minutes=5))  # past the retry backoff
    await app.service.run_until_idle()
    assert (await app.store.get(recovered)).status is ScheduledCommandStatus.COMPLETED  # type: ignore[union-attr]

    page = await get_page(client, "/entries")
    link = page.by_id(f"entries-link-{recovered}")
    assert link is not None
    assert (link.text(), link.attrs["title"]) == (recovered[:8], recovered)
    headers = [th.text() for th in page.find_all("th", scope="col")]
    assert headers[headers.index("Failed attempts") + 1 : headers.index("Error") + 1] == [
        "Finished",
        "Duration",
        "Error",
    ]
    row = page.by_id(f"entries-row-{recovered}")
    assert row is not None
    assert "earlier: ValueError: failure 1 of once" in row.text()
    assert re.search(r"\b\d+ ms\b", row.text())
    assert [e.attrs["datetime"] for e in row.find_all("time")][-1].startswith("20")

    detail = await get_page(client, f"/entries/{recovered}")
    error = detail.by_id("entry-error")
    assert error is not None and "failure 1 of once" in error.text() and "an earlier attempt" in error.text()
    assert "Earlier error" in detail.text() and "Last error" not in detail.text()
    dead = await get_page(client, f"/entries/{filled.failed[0]}")
    assert "Last error" in dead.text() and "Earlier error" not in dead.text()


async def _a_worker_dies_holding_an_entry(filled: Filled) -> str:
    """A live worker and a gone one (last seen 2 leases ago) that still holds an entry under an expired lease."""
    app = filled.app
    now, lease = app.clock.now(), app.settings.lease_duration
    for worker_id, seen in (("live-worker", now), ("dead-worker", now - 2 * lease)):
        await app.store.register_worker(
            StoredWorker(
                worker_id=worker_id,
                host="host-a",
                pid=7 if worker_id == "dead-worker" else 8,
                command_types=("scheduling_app.Record",),
                started_at=now - timedelta(hours=1),
                last_seen_at=seen,
                lease_duration=lease,
            )
        )
    (held,) = await app.store.claim_due(now=now, limit=1, worker_id="dead-worker", lease_duration=lease)
    app.clock.advance(lease + timedelta(seconds=1))
    await app.store.touch_worker("live-worker", now=app.clock.now())
    return held.id


async def test_the_workers_page_shows_the_live_and_the_gone(client: httpx.AsyncClient, filled: Filled) -> None:
    doc = await get_page(client, "/workers")
    assert "No worker has registered yet." in doc.text()

    await _a_worker_dies_holding_an_entry(filled)
    doc = await get_page(client, "/workers?fragment=workers")
    rows = {r.attrs["data-worker-id"]: r for r in doc.find_all("tr") if "data-worker-id" in r.attrs}
    assert {worker_id: row.attrs["data-state"] for worker_id, row in rows.items()} == {
        "live-worker": "running",
        "dead-worker": "gone",
    }
    assert [td.text() for td in rows["dead-worker"].find_all("td")][1:3] == ["7", "gone"]
    assert [td.text() for td in rows["dead-worker"].find_all("td")][3] == "1"  # the entry it still holds
    counts = doc.by_id("workers-counts")
    assert counts is not None and counts.text().startswith("1 running, 0 stopping, 1 gone")
    assert doc.by_id("workers-stuck") is not None


async def test_overview_and_entry_page_show_an_entry_stuck_with_a_gone_worker(
    client: httpx.AsyncClient, filled: Filled
) -> None:
    doc = await get_page(client, "/")
    stuck = doc.by_id("stuck")
    assert stuck is not None and stuck.attrs["data-count"] == "0" and "nothing is stuck" in stuck.text()

    entry_id = await _a_worker_dies_holding_an_entry(filled)
    doc = await get_page(client, "/?fragment=overview")
    stuck = doc.by_id("stuck")
    assert stuck is not None and stuck.attrs["data-count"] == "1"
    summary = doc.by_id("workers-summary")
    assert summary is not None and summary.text() == "1 running, 0 stopping, 1 gone"

    doc = await get_page(client, f"/entries/{entry_id}")
    banner = doc.by_id("entry-stuck")
    assert banner is not None
    assert "dead-worker" in banner.text() and len(banner.find_all("time")) == 2  # started, lease expiry
    detail = (await client.get(f"/api/entries/{entry_id}")).json()
    assert detail["stuck"] is True
    fleet = (await client.get("/api/workers")).json()
    assert (fleet["stuck"], fleet["by_state"]["gone"]) == (1, 1)

    await filled.app.service.run_until_idle()  # a live worker recovers it
    doc = await get_page(client, f"/entries/{entry_id}")
    assert doc.by_id("entry-stuck") is None


async def test_a_schedule_name_with_a_slash_gets_buttons_that_work(client: httpx.AsyncClient, filled: Filled) -> None:
    """The Run now, Pause and Resume buttons of ``reports/daily`` post to ``/api/recurring/reports%2Fdaily/...`` and
    its link opens ``/recurring/reports%2Fdaily``: they work."""
    await filled.app.scheduler.schedule_recurring("reports/daily", Record(value="daily"), interval=timedelta(days=1))
    client.headers["X-CSRF-Token"] = "unused with the bearer token"
    for state in ("Active", "Paused", "Active"):
        doc = await get_page(client, "/recurring")
        (row,) = [r for r in doc.find_all("tr") if r.attrs.get("data-name") == "reports/daily"]
        assert state in row.text()
        run_now, button = action_buttons(row)
        action = "pause" if state == "Active" else "resume"
        assert button.attrs["data-action"] == f"/api/recurring/reports%2Fdaily/{action}"
        response = await client.post(button.attrs["data-action"])
        assert response.status_code == 200 and response.json()["name"] == "reports/daily"
    assert run_now.attrs["data-action"] == "/api/recurring/reports%2Fdaily/run-now"
    assert (await client.post(run_now.attrs["data-action"])).json()["name"] == "reports/daily"
    (link,) = [a for a in row.find_all("a") if a.attrs.get("id", "").startswith("schedule-link-")]
    assert link.attrs["href"] == "/recurring/reports%2Fdaily"
    schedule_page = await get_page(client, link.attrs["href"])
    assert schedule_page.by_id("occurrences") is not None


async def test_a_schedule_that_does_not_load_shows_its_error(client: httpx.AsyncClient, filled: Filled) -> None:
    """A stored schedule in an unknown time zone does not break the page: its row and its own page say why it cannot
    run, and neither offers Run now (the API refuses it with the reason)."""
    now = filled.app.clock.now()
    broken = StoredSchedule(
        name="broken",
        command_type="scheduling_app.Record",
        payload="{}",
        cron="0 9 * * *",
        timezone="Mars/Olympus_Mons",
        created_at=now,
        updated_at=now,
    )
    await filled.app.store.upsert_schedule(broken)
    for path in ("/recurring", "/recurring?fragment=recurring"):
        doc = await get_page(client, path)
        (row,) = [r for r in doc.find_all("tr") if r.attrs.get("data-name") == "broken"]
        assert "Cannot run" in row.text() and "Mars/Olympus_Mons" in row.text()
        (good,) = [r for r in doc.find_all("tr") if r.attrs.get("data-name") == "nightly-report"]
        assert "Active" in good.text() and "Cannot run" not in good.text()
        assert "Run now" not in [b.text().split(" schedule")[0] for b in action_buttons(row)]
    # It cannot be run now either: a 422 saying why, and no occurrence, no audit record.
    refused = await client.post("/api/recurring/broken/run-now")
    assert refused.status_code == 422 and "Mars/Olympus_Mons" in refused.json()["detail"]
    assert await filled.app.store.list_occurrences("broken") == []
    schedule_page = await get_page(client, "/recurring/broken")
    state = schedule_page.by_id("schedule-state")
    assert state is not None and "Cannot run" in state.text() and schedule_page.by_id("run-now") is None


@pytest.mark.parametrize("path", ["/entries", "/dead-letters"])
async def test_a_huge_offset_is_a_422_naming_it(client: httpx.AsyncClient, filled: Filled, path: str) -> None:
    response = await client.get(path, params={"offset": "99999999999999999999"}, headers={"Accept": "text/html"})
    assert response.status_code == 422 and "99999999999999999999" in response.text


# -- live regions ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "region"),
    [
        ("/", "overview"),
        ("/entries?status=FAILED", "entries"),
        ("/dead-letters", "dead_letters"),
        ("/recurring", "recurring"),
        ("/queues", "queues"),
    ],
)
async def test_each_page_has_a_live_region_served_as_a_fragment(
    client: httpx.AsyncClient, path: str, region: str
) -> None:
    doc = await get_page(client, path)
    (live,) = [e for e in doc.iter() if "data-fragment-url" in e.attrs]
    url = live.attrs["data-fragment-url"]
    assert f"fragment={region}" in url
    response = await client.get(url)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    fragment = parse(response.text)
    assert not fragment.find_all("html") and not fragment.find_all("h1") and not fragment.find_all("main")
    # The fragment is what the page shows in its region (the same partial renders both).
    assert fragment.text() == live.text()


async def test_the_entry_fragment_follows_the_entry(client: httpx.AsyncClient, filled: Filled) -> None:
    entry_id = filled.failed[0]
    before = parse((await client.get(f"/entries/{entry_id}?fragment=entry")).text)
    status = before.by_id("entry-status")
    assert status is not None and status.attrs["data-status"] == "FAILED"
    assert await filled.app.scheduler.requeue(entry_id)
    after = parse((await client.get(f"/entries/{entry_id}?fragment=entry")).text)
    status = after.by_id("entry-status")
    assert status is not None and status.attrs["data-status"] == "PENDING"


async def test_an_unknown_fragment_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/?fragment=nope")
    assert response.status_code == 404
    assert "'nope'" in response.text and "'overview'" in response.text
    response = await client.get("/entries", params={"fragment": "<script>alert(1)</script>"})
    assert response.status_code == 404
    assert "<script>" not in response.text and "&lt;script&gt;" in response.text


# -- read-only, mounting, login -------------------------------------------------------------------------------


async def test_read_only_mode_renders_no_buttons(filled: Filled) -> None:
    dashboard = create_dashboard_app(
        filled.app.store, settings=DashboardSettings(token=TOKEN, read_only=True), clock=filled.app.clock
    )
    async with _client(dashboard) as http:
        for path in [*PAGES, f"/entries/{filled.failed[0]}", f"/entries/{filled.pending[0]}"]:
            doc = await get_page(http, path)
            assert action_buttons(doc) == [], path
            assert "Actions" not in [th.text() for th in doc.find_all("th")]
            assert "Read-only mode" in doc.text()
        # No Cancel on a dead letter either, and the route behind it refuses.
        assert (await http.post(f"/api/entries/{filled.failed[0]}/cancel")).status_code == 403
        entry = await filled.app.store.get(filled.failed[0])
        assert entry is not None and entry.status is ScheduledCommandStatus.FAILED


async def test_every_url_is_under_the_mount_path(filled: Filled) -> None:
    dashboard = create_dashboard_app(filled.app.store, settings=DashboardSettings(token=TOKEN), clock=filled.app.clock)
    outer = FastAPI()
    outer.mount("/scheduling", dashboard)
    async with _client(outer) as http:
        for path in [*PAGES, "/entries?limit=2", f"/entries/{filled.failed[0]}", "/nothing-here"]:
            response = await http.get(f"/scheduling{path}", headers={"Accept": "text/html"})
            if path == "/nothing-here":
                assert response.status_code == 404
                continue
            assert response.status_code == 200, (path, response.text)
            doc = parse(response.text)
            urls = [
                value
                for element in doc.iter()
                for name, value in element.attrs.items()
                if name in ("href", "src", "action", "data-action", "data-fragment-url")
            ]
            assert urls, path
            outside = [u for u in urls if not (u.startswith(("/scheduling/", "#")) or u == "/scheduling")]
            assert outside == [], (path, outside)
        # The links lead somewhere: the stylesheet, a fragment and the next page all answer under the prefix.
        doc = parse((await http.get("/scheduling/entries?limit=2")).text)
        following = doc.by_id("page-next")
        assert following is not None
        for url in [
            following.attrs["href"],
            doc.find_all("link", rel="stylesheet")[0].attrs["href"],
            next(e for e in doc.iter() if "data-fragment-url" in e.attrs).attrs["data-fragment-url"],
        ]:
            assert (await http.get(url)).status_code == 200, url


async def test_a_cookie_session_acts_with_the_pages_csrf_token(filled: Filled) -> None:
    """What dashboard.js does: log in with ?token=, read <meta name="csrf-token">, POST with X-CSRF-Token."""
    dashboard = create_dashboard_app(filled.app.store, settings=DashboardSettings(token=TOKEN), clock=filled.app.clock)
    transport = httpx.ASGITransport(app=dashboard)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", follow_redirects=True) as browser:
        page = await browser.get(f"/dead-letters?token={TOKEN}", headers={"Accept": "text/html"})
        assert page.status_code == 200 and str(page.url) == "http://testserver/dead-letters"
        doc = parse(page.text)
        (meta,) = doc.find_all("meta", name="csrf-token")
        button = doc.by_id(f"dead-requeue-{filled.failed[0]}")
        assert button is not None
        refused = await browser.post(button.attrs["data-action"], headers={"Origin": "http://testserver"})
        assert refused.status_code == 403
        done = await browser.post(
            button.attrs["data-action"],
            headers={"X-CSRF-Token": meta.attrs["content"], "Origin": "http://testserver"},
        )
        assert done.status_code == 200, done.text
    entry = await filled.app.scheduler.get_status(filled.failed[0])
    assert entry is not None and entry.status == "PENDING"


# -- accessibility basics -------------------------------------------------------------------------------------


async def _all_pages(client: httpx.AsyncClient, filled: Filled) -> list[tuple[str, Element]]:
    paths = [*PAGES, f"/entries/{filled.failed[0]}", "/entries?status=PENDING"]
    return [(path, await get_page(client, path)) for path in paths] + [
        ("/entries/missing", await get_page(client, "/entries/missing", status=404))
    ]


async def test_pages_have_one_h1_a_main_landmark_and_a_skip_link(client: httpx.AsyncClient, filled: Filled) -> None:
    for path, doc in await _all_pages(client, filled):
        (html,) = doc.find_all("html")
        assert html.attrs.get("lang") == "en", path
        assert len(doc.find_all("h1")) == 1, path
        (main,) = doc.find_all("main")
        assert main.attrs["id"] == "main"
        first_link = doc.find_all("a")[0]
        assert first_link.attrs["href"] == "#main" and "Skip" in first_link.text(), path
        assert doc.find_all("title")[0].text()
        statuses = [e for e in doc.iter() if e.attrs.get("role") == "status"]
        assert len(statuses) == 1, path


async def test_nav_marks_the_current_page(client: httpx.AsyncClient) -> None:
    for path, label in [
        ("/", "Overview"),
        ("/entries", "Entries"),
        ("/dead-letters", "Dead letters"),
        ("/recurring", "Recurring"),
        ("/queues", "Queues"),
    ]:
        doc = await get_page(client, path)
        (nav,) = doc.find_all("nav", aria_label="Dashboard sections")
        current = [a.text() for a in nav.find_all("a") if a.attrs.get("aria-current") == "page"]
        assert current == [label], path


async def test_every_form_control_has_a_label_and_every_button_text(client: httpx.AsyncClient, filled: Filled) -> None:
    for path, doc in await _all_pages(client, filled):
        labels = {label.attrs.get("for") for label in doc.find_all("label")}
        for control in [e for e in doc.iter() if e.tag in ("input", "select", "textarea")]:
            if control.attrs.get("type") == "hidden":
                continue
            labelled = (
                control.attrs.get("id") in labels
                or control.attrs.get("aria-label")
                or any(a.tag == "label" for a in control.ancestors())
            )
            assert labelled, (path, control.attrs)
        for button in doc.find_all("button"):
            assert button.text(), (path, button.attrs)
            assert button.attrs.get("type") in ("button", "submit"), (path, button.attrs)
        ids = [e.attrs["id"] for e in doc.iter() if "id" in e.attrs]
        assert len(ids) == len(set(ids)), (path, [i for i in ids if ids.count(i) > 1])


async def test_tables_have_captions_and_scoped_headers(client: httpx.AsyncClient, filled: Filled) -> None:
    for path, doc in await _all_pages(client, filled):
        for table in doc.find_all("table"):
            assert table.find_all("caption") and table.find_all("caption")[0].text(), path
            for th in table.find_all("th"):
                assert th.attrs.get("scope") in ("col", "row"), (path, th.text())


async def test_times_are_utc_iso_time_elements(client: httpx.AsyncClient, filled: Filled) -> None:
    for path, doc in await _all_pages(client, filled):
        for time in doc.find_all("time"):
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", time.attrs["datetime"]), (path, time.attrs)


# -- pure helpers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (45.4, "45 s"),
        (60, "1 min"),
        (125, "2 min 5 s"),
        (3_600, "1 h"),
        (11_400, "3 h 10 min"),
        (86_400, "1 d"),
        (187_200, "2 d 4 h"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_outcome_chart_stacks_the_outcomes_of_a_bar_scaled_to_the_fullest_bar() -> None:
    """Segments stack bottom up in outcome order, heights scaled to the bar with the most outcomes; an empty bar
    has no segment; labels are UTC times, with the day for bars of several hours."""
    since = START - timedelta(minutes=2)
    counts = [{"completed": 2, "failed": 2}, {}, {"completed": 1, "retried": 1}]
    history = OutcomeHistory(
        range="1h",
        now=START,
        since=since,
        bucket_seconds=60,
        totals={"completed": 3, "retried": 1, "failed": 2, "expired": 0},
        buckets=[
            OutcomeBucket(start=since + timedelta(minutes=i), counts=dict.fromkeys(OUTCOMES, 0) | c)
            for i, c in enumerate(counts)
        ],
        failures_by_type=[],
    )
    chart = outcome_chart(history, width=300, height=100)
    first, empty, last = chart.bars
    assert chart.peak == 4 and empty.segments == []
    assert [(s.outcome, s.y, s.height) for s in first.segments] == [("completed", 50, 50), ("failed", 0, 50)]
    assert [(s.outcome, s.y, s.height) for s in last.segments] == [("completed", 75, 25), ("retried", 50, 25)]
    assert (first.x, first.width, last.x) == (1, 98, 201)
    assert chart.first_label == "11:58 UTC" and last.label == "12:00"
    week = history.model_copy(update={"bucket_seconds": 6 * 3600})
    assert outcome_chart(week).bars[0].label == "Mar 01 11:58"


async def test_everything_focusable_in_a_live_region_has_an_id(client: httpx.AsyncClient, filled: Filled) -> None:
    """dashboard.js gives focus back by id after swapping a region in: every focusable element needs one."""
    focusable = {"a", "button", "input", "select", "summary", "textarea"}
    for path, doc in await _all_pages(client, filled):
        for region in [e for e in doc.iter() if "data-fragment-url" in e.attrs]:
            assert region.attrs.get("tabindex") == "-1" and region.attrs.get("id"), path
            for e in region.iter():
                if e is not region and (e.tag in focusable or "tabindex" in e.attrs):
                    assert e.attrs.get("id"), (path, e.tag, e.attrs)


async def test_a_running_entry_offers_cancel_of_its_attempt_in_the_list_and_on_its_page(
    client: httpx.AsyncClient, filled: Filled
) -> None:
    """A PROCESSING entry's Cancel button asks its worker to cancel the attempt (``?running=true``)."""
    store = filled.app.store
    claimed = await store.claim_due(
        now=filled.app.clock.now() + timedelta(days=365), limit=1, worker_id="w", lease_duration=timedelta(minutes=1)
    )
    (entry,) = claimed
    running = f"/api/entries/{entry.id}/cancel?running=true"
    doc = await get_page(client, "/entries")
    buttons = {b.attrs["id"]: b.attrs["data-action"] for b in action_buttons(doc)}
    assert buttons[f"entries-cancel-{entry.id}"] == running
    (cancel,) = action_buttons(await get_page(client, f"/entries/{entry.id}"))
    assert cancel.attrs["data-action"] == running
    response = await client.post(running)
    assert response.status_code == 200 and response.json()["running"] is True


async def test_overview_and_workers_page_show_entries_no_live_worker_would_claim(
    client: httpx.AsyncClient, filled: Filled
) -> None:
    """A live worker with the Record handler that claims only the ``emails`` queue leaves the due Records of
    ``default`` waiting: the overview, the Workers page and ``/api/workers`` say so, by queue and type."""
    app = filled.app
    await app.store.register_worker(
        StoredWorker(
            worker_id="emails-only",
            host="host-a",
            pid=9,
            queues=("emails",),
            command_types=("scheduling_app.Record",),
            started_at=app.clock.now(),
            last_seen_at=app.clock.now(),
            lease_duration=app.settings.lease_duration,
        )
    )
    doc = await get_page(client, "/?fragment=overview")
    waiting = doc.by_id("waiting-for-worker")
    assert waiting is not None
    [shown] = [e for e in waiting.find_all("span") if "data-queue" in e.attrs]
    assert (shown.attrs["data-queue"], shown.attrs["data-command-type"]) == ("default", "scheduling_app.Record")
    assert int(shown.attrs["data-count"]) >= 1
    assert "waiting for a worker that handles scheduling_app.Record in queue default" in shown.text()

    doc = await get_page(client, "/workers?fragment=workers")
    listed = doc.by_id("workers-waiting")
    assert listed is not None and "scheduling_app.Record in queue default" in listed.text()
    assert (await client.get("/api/workers")).json()["waiting"] == {
        "default": {"scheduling_app.Record": int(shown.attrs["data-count"])}
    }
