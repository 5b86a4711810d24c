"""Helpers of the dashboard tests (the fixtures are in ``conftest.py``): the token, clients, history, log-in."""

from __future__ import annotations

from datetime import timedelta

import httpx
from fastapi import FastAPI
from scheduling_app import App, Fail, Record

from scheduling import ScheduleOptions
from scheduling.recurring import RecurringSchedule
from scheduling.recurring_ops import declare
from scheduling.web.context import STATE_KEY, DashboardContext
from scheduling.web.security import SESSION_COOKIE, session_csrf_token

__all__ = ["BASE_URL", "TOKEN", "http_client", "log_in", "populate"]

#: The dashboard token of every test app.
TOKEN = "test-token-0123456789"
#: The base URL of the test clients; requests from a page of the dashboard carry this Origin.
BASE_URL = "http://testserver"


async def populate(app: App) -> dict[str, str]:
    """One entry per state, run by the real service: COMPLETED, two FAILED (types differ by key only), PENDING,
    CANCELLED; and an interval schedule ``report`` (every hour, its first occurrence PENDING)."""
    scheduler = app.scheduler
    ids = {
        "done": await scheduler.schedule(Record(value="done"), ScheduleOptions(correlation_id="flow-1")),
        "dead": await scheduler.schedule(Fail(key="x"), ScheduleOptions(max_retries=0)),
        "dead2": await scheduler.schedule(Fail(key="y"), ScheduleOptions(max_retries=0, correlation_id="flow-1")),
        "later": await scheduler.schedule(Record(value="later"), ScheduleOptions(delay=timedelta(days=30))),
        "cancelled": await scheduler.schedule(Record(value="no"), ScheduleOptions(delay=timedelta(days=30))),
    }
    await scheduler.cancel(ids["cancelled"])
    await app.service.run_until_idle()
    now = app.clock.now()
    report = RecurringSchedule(
        name="report",
        command_type="scheduling_app.Record",
        payload='{"value": "report"}',
        interval=timedelta(hours=1),
        created_at=now,
        updated_at=now,
    )
    await declare(app.store, report, now, default_max_retries=3)
    return ids


def http_client(app: FastAPI, **kwargs: object) -> httpx.AsyncClient:
    """A client of ``app`` through the ASGI transport (no server)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL, **kwargs)  # type: ignore[arg-type]


async def log_in(client: httpx.AsyncClient, root: str = "/", *, dashboard: FastAPI | None = None) -> str:
    """Log ``client`` in as a browser does (``GET <root>?token=...``); return its CSRF token (also set as header).

    ``dashboard``: the dashboard app when it is mounted in the client's app (default: the client's app itself).
    """
    response = await client.get(root, params={"token": TOKEN})
    assert response.status_code == 303, response.text
    session = client.cookies.get(SESSION_COOKIE)
    assert session is not None
    if dashboard is None:
        transport = client._transport
        assert isinstance(transport, httpx.ASGITransport)
        assert isinstance(transport.app, FastAPI)
        dashboard = transport.app
    context: DashboardContext = getattr(dashboard.state, STATE_KEY)
    token = session_csrf_token(context, session)
    client.headers["X-CSRF-Token"] = token
    return token
