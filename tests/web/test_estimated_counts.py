"""Counts past the exact bound: the overview and the entries list on PostgreSQL say "about N" for a status the
store estimated (the API: ``counts_exact`` / ``total_exact`` false, ``total_estimated`` true); on the other stores
every count stays exact. The bounds are lowered so that a dozen entries cross them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from dashboard_support import TOKEN, http_client
from sqlalchemy.engine import make_url

from scheduling import ManualClock, admin
from scheduling.entries import ScheduledCommandEntry, ScheduledCommandStatus
from scheduling.web import DashboardSettings, create_dashboard_app
from stores import ScheduledCommandStore
from stores.sql import SqlStore

BASE = datetime(2026, 1, 1, tzinfo=UTC)


async def twelve_pending(store: ScheduledCommandStore) -> None:
    await store.add(
        [
            ScheduledCommandEntry(
                id=str(uuid.uuid4()),
                command_type="tests.Ping",
                payload="{}",
                status=ScheduledCommandStatus.PENDING,
                scheduled_for=BASE,
                created_at=BASE,
            )
            for _ in range(12)
        ]
    )


@pytest.fixture(autouse=True)
def low_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin, "EXACT_COUNT_LIMIT", 5)
    monkeypatch.setattr(admin, "COUNT_LIMIT", 5)


async def test_postgresql_shows_a_large_status_as_about(postgresql_store: SqlStore, clock: ManualClock) -> None:
    await twelve_pending(postgresql_store)
    conninfo = make_url(postgresql_store.url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("ANALYZE scheduled_commands")
    app = create_dashboard_app(postgresql_store, settings=DashboardSettings(token=TOKEN), clock=clock)
    async with http_client(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        overview = (await client.get("/api/overview")).json()
        assert (overview["counts"]["PENDING"], overview["counts_exact"]["PENDING"]) == (12, False)
        assert (overview["counts"]["FAILED"], overview["counts_exact"]["FAILED"]) == (0, True)
        assert (overview["total"], overview["total_exact"]) == (12, False)
        page = (await client.get("/", headers={"Accept": "text/html"})).text
        assert 'data-count="12" data-exact="false"' in page and ">about 12</a>" in page
        assert 'data-count="0" data-exact="true"' in page
        listing = (await client.get("/api/entries", params={"status": "PENDING"})).json()
        assert (listing["total"], listing["total_exact"], listing["total_estimated"]) == (12, False, True)
        entries = (await client.get("/entries", headers={"Accept": "text/html"})).text
        assert "About 12 entries match (an estimate from the database's statistics)." in entries, entries[
            entries.find("entries-total") :
        ][:400]


async def test_other_stores_count_exactly(store: ScheduledCommandStore, clock: ManualClock) -> None:
    await twelve_pending(store)
    app = create_dashboard_app(store, settings=DashboardSettings(token=TOKEN), clock=clock)
    async with http_client(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        overview = (await client.get("/api/overview")).json()
        assert (overview["counts"]["PENDING"], overview["total_exact"]) == (12, True)
        assert all(overview["counts_exact"].values())
        listing = (await client.get("/api/entries")).json()
        assert (listing["total"], listing["total_exact"], listing["total_estimated"]) == (12, True, False)
        assert ">about " not in (await client.get("/", headers={"Accept": "text/html"})).text
