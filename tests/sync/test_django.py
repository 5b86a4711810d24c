"""A Django project (settings configured here, one model, one view) on SQLite and on PostgreSQL: the view creates
a row and schedules a command inside ``transaction.atomic()``, through Django's own connection. Rolled back:
neither exists; committed: a worker runs the command and sees the row."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from scheduling_app import make_app
from sqlalchemy.engine import make_url
from sync_support import empty_postgres

from mediator import Command, CommandHandler
from scheduling import ScheduledCommandStatus
from scheduling.sync import SyncScheduler
from stores import SqlStore

django = pytest.importorskip("django")


class ShipOrder(Command[str]):
    order_id: int
    database: str  #: the Django alias of the database holding the order


class ShipOrderHandler(CommandHandler[ShipOrder, str]):
    #: Per Django alias: how the worker reads an order's item by id, outside Django (set by the fixture).
    readers: dict[str, Callable[[int], str | None]] = {}  # noqa: RUF012
    shipped: list[str] = []  # noqa: RUF012 - the test reads what the handler saw

    async def handle(self, command: ShipOrder) -> str:
        item = self.readers[command.database](command.order_id) or "<no such order>"
        ShipOrderHandler.shipped.append(item)
        return item


@dataclass
class Site:
    alias: str
    order_model: Any
    view: Any
    scheduler: SyncScheduler
    worker: Any
    count_entries: Callable[[], int]


def _postgres_settings(url: str) -> dict[str, Any]:
    parsed = make_url(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parsed.database,
        "USER": parsed.username or "",
        "PASSWORD": parsed.password or "",
        "HOST": parsed.host or "",
        "PORT": str(parsed.port or ""),
    }


def _conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def sites(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Site]]:
    """One Django project with two databases: ``default`` (SQLite) and ``pg`` (the run's PostgreSQL database)."""
    from django.conf import settings

    if settings.configured:  # pragma: no cover - one Django project per test process
        pytest.skip("Django settings were configured by another test")
    database = tmp_path_factory.mktemp("django") / "shop.db"
    postgres_url: str = request.getfixturevalue("postgres_url")
    empty_postgres(postgres_url)  # the run's tests share it: no other test's entries for this worker
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(database),
                # Take SQLite's write lock at BEGIN and wait for it, as the scheduler's own connections do.
                "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30},
            },
            "pg": _postgres_settings(postgres_url),
        },
        INSTALLED_APPS=[],
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    )
    django.setup()
    from django.db import connections, models, transaction
    from django.http import HttpRequest, JsonResponse

    class Order(models.Model):
        item = models.CharField(max_length=100)

        class Meta:
            app_label = "shop"

    def read_sqlite(order_id: int) -> str | None:
        with sqlite3.connect(database) as conn:
            row = conn.execute("SELECT item FROM shop_order WHERE id = ?", (order_id,)).fetchone()
        return row[0] if row else None

    def read_postgres(order_id: int) -> str | None:
        with psycopg.connect(_conninfo(postgres_url)) as conn:
            row = conn.execute("SELECT item FROM shop_order WHERE id = %s", (order_id,)).fetchone()
        return row[0] if row else None

    def counter(alias: str) -> Callable[[], int]:
        def count() -> int:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT count(*) FROM scheduled_commands")
                return int(cursor.fetchone()[0])

        return count

    store_urls = {"default": f"sqlite:///{database}", "pg": postgres_url}
    ShipOrderHandler.readers.update(default=read_sqlite, pg=read_postgres)
    built: dict[str, Site] = {}
    for alias, url in store_urls.items():
        with connections[alias].schema_editor() as editor:
            editor.create_model(Order)
        worker = make_app(store=SqlStore(url), handlers=[ShipOrderHandler])
        scheduler = worker.injector.get(SyncScheduler)
        scheduler.open()  # at start-up: the store's tables, in the application's database

        def create_order(request: HttpRequest, alias: str = alias, scheduler: SyncScheduler = scheduler) -> Any:
            with transaction.atomic(using=alias):
                order = Order.objects.using(alias).create(item=request.POST["item"])
                command = ShipOrder(order_id=order.pk, database=alias)
                command_id = scheduler.schedule(command, session=connections[alias])
                if request.POST.get("decline"):
                    raise ValueError("payment declined")
            return JsonResponse({"order": order.pk, "command": command_id}, status=201)

        built[alias] = Site(alias, Order, create_order, scheduler, worker, counter(alias))
    try:
        yield built
    finally:
        for alias, site in built.items():
            site.scheduler.close()
            if alias == "pg":
                with connections[alias].schema_editor() as editor:
                    editor.delete_model(Order)
            connections[alias].close()


@pytest.fixture(params=["default", "pg"], ids=["sqlite", "postgresql"])
def site(request: pytest.FixtureRequest, sites: dict[str, Site]) -> Site:
    return sites[request.param]


def _post(site: Site, **data: str) -> Any:
    from django.test import RequestFactory

    return site.view(RequestFactory().post("/orders", data))


def test_rolled_back_view_stores_neither_row_nor_command(site: Site) -> None:
    before = site.count_entries()
    with pytest.raises(ValueError, match="payment declined"):
        _post(site, item="lamp", decline="yes")
    assert not site.order_model.objects.using(site.alias).filter(item="lamp").exists()
    assert site.count_entries() == before


def test_committed_view_runs_the_command_with_the_row_visible(site: Site) -> None:
    ShipOrderHandler.shipped.clear()
    response = _post(site, item=f"book on {site.alias}")
    assert response.status_code == 201
    body = json.loads(response.content)
    entry = site.scheduler.get_status(body["command"])
    assert entry is not None and entry.status is ScheduledCommandStatus.PENDING
    assert asyncio.run(site.worker.service.run_until_idle()) == 1
    assert ShipOrderHandler.shipped == [f"book on {site.alias}"]
    done = site.scheduler.get_status(body["command"])
    assert done is not None and done.status is ScheduledCommandStatus.COMPLETED
    assert done.result_payload == json.dumps(f"book on {site.alias}")


def test_a_connection_to_another_database_is_refused(sites: dict[str, Site]) -> None:
    from django.db import connections

    from stores.errors import SessionNotSupportedError

    with pytest.raises(SessionNotSupportedError, match="another database than the store's"):
        sites["default"].scheduler.schedule(ShipOrder(order_id=1, database="pg"), session=connections["pg"])


def test_postgresql_workers_are_notified_on_commit_only(sites: dict[str, Site], postgres_url: str) -> None:
    """The NOTIFY goes through Django's cursor inside the view's transaction: delivered when it commits, never for
    a rolled-back view."""
    from stores.sql._postgresql import NOTIFY_CHANNEL

    with psycopg.connect(_conninfo(postgres_url), autocommit=True) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        with pytest.raises(ValueError, match="payment declined"):
            _post(sites["pg"], item="chair", decline="yes")
        # Notifications arrive in commit order: anything the rolled-back view sent would come before this marker.
        listener.execute("SELECT pg_notify(%s, 'marker')", (NOTIFY_CHANNEL,))
        _post(sites["pg"], item="table")
        notified = list(listener.notifies(timeout=5, stop_after=2))
    assert [n.payload == "marker" for n in notified] == [True, False]
    asyncio.run(sites["pg"].worker.service.run_until_idle())  # leaves no due entry to the next test


def test_importing_the_sync_module_does_not_import_django() -> None:
    """Django's connection is recognised without importing Django: Flask applications do not pay for it."""
    import subprocess
    import sys

    script = "import sys, scheduling.sync; print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
