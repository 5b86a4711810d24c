"""Fixtures of the dashboard tests: a store with history, the dashboard app over it, and HTTP clients.

Everything is real: a MemoryStore or a SQLite file (``store`` is parametrized over both), the scheduling service
of ``tests/support/scheduling_app.py`` running commands to fill it, and HTTP through ``httpx.ASGITransport`` into the
FastAPI app (no server, no network). Time is a ``ManualClock``, shared by the application and the dashboard.

- ``clock``: the ``ManualClock`` (starts at ``scheduling_app.START``).
- ``store``: an opened, empty store (``memory`` or ``sqlite``); ``sqlite_store`` / ``postgresql_store`` for one.
- ``scheduling_app``: the application over ``store`` and ``clock`` (``scheduling_app.App``).
- ``populated``: ids of one entry per interesting state (``done``, ``dead``, ``dead2``, ``later``, ``cancelled``),
  run by the service, plus a recurring schedule named ``report``.
- ``dashboard_settings`` (override it in a test module to change settings), ``dashboard``: the app.
- ``client``: authenticated with the bearer token; ``anonymous``: no credentials; ``browser``: logged in with the
  session cookie like a browser (``Accept: text/html``), its CSRF token in ``browser.headers["X-CSRF-Token"]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from dashboard_support import BASE_URL, TOKEN, http_client, log_in, populate
from empty_postgres import empty_postgres_async
from fastapi import FastAPI
from scheduling_app import START, App, make_app

from scheduling import ManualClock
from scheduling.web import DashboardSettings, create_dashboard_app
from stores import MemoryStore, ScheduledCommandStore, SqlStore


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    async with SqlStore(f"sqlite:///{tmp_path / 'dashboard.db'}") as store:
        yield store


@pytest.fixture
async def postgresql_store(postgres_url: str) -> AsyncIterator[SqlStore]:
    async with SqlStore(postgres_url) as store:
        async with store.engine.begin() as conn:
            await empty_postgres_async(conn)
        yield store


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ScheduledCommandStore]:
    if request.param == "memory":
        async with MemoryStore() as memory:
            yield memory
    else:
        async with SqlStore(f"sqlite:///{tmp_path / 'dashboard.db'}") as sqlite:
            yield sqlite


@pytest.fixture
def scheduling_app(store: ScheduledCommandStore, clock: ManualClock) -> App:
    return make_app(store=store, clock=clock)


@pytest.fixture
async def populated(scheduling_app: App) -> dict[str, str]:
    return await populate(scheduling_app)


@pytest.fixture
def dashboard_settings() -> DashboardSettings:
    return DashboardSettings(token=TOKEN)


@pytest.fixture
def dashboard(store: ScheduledCommandStore, clock: ManualClock, dashboard_settings: DashboardSettings) -> FastAPI:
    return create_dashboard_app(store, settings=dashboard_settings, clock=clock)


@pytest.fixture
async def client(dashboard: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(dashboard, headers={"Authorization": f"Bearer {TOKEN}"}) as authenticated:
        yield authenticated


@pytest.fixture
async def anonymous(dashboard: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(dashboard) as nobody:
        yield nobody


@pytest.fixture
async def browser(dashboard: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(dashboard, headers={"Accept": "text/html", "Origin": BASE_URL}) as logged_in:
        await log_in(logged_in)
        yield logged_in
