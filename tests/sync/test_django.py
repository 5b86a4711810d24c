"""A Django project on SQLite (settings configured here, one model, one view): the view creates a row and schedules
a command inside ``transaction.atomic()``. Rolled back: neither exists; committed: a worker runs the command and
sees the row."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from scheduling_app import make_app

from mediator import Command, CommandHandler
from scheduling import ScheduledCommandStatus
from scheduling.sync import SyncScheduler
from stores import SqlStore

django = pytest.importorskip("django")


class ShipOrder(Command[str]):
    order_id: int


class ShipOrderHandler(CommandHandler[ShipOrder, str]):
    #: The database file the handler reads the order from (set by the fixture).
    database: Path | None = None
    shipped: list[str] = []  # noqa: RUF012 - the test reads what the handler saw

    async def handle(self, command: ShipOrder) -> str:
        assert self.database is not None
        with sqlite3.connect(self.database) as conn:
            row = conn.execute("SELECT item FROM shop_order WHERE id = ?", (command.order_id,)).fetchone()
        item = row[0] if row else "<no such order>"
        ShipOrderHandler.shipped.append(item)
        return item


@dataclass
class Project:
    database: Path
    order_model: Any
    view: Any
    scheduler: SyncScheduler
    worker: Any


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    from django.conf import settings

    if settings.configured:  # pragma: no cover - one Django project per test process
        pytest.skip("Django settings were configured by another test")
    database = tmp_path_factory.mktemp("django") / "shop.db"
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(database),
                # Take SQLite's write lock at BEGIN and wait for it, as the scheduler's own connections do.
                "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30},
            }
        },
        INSTALLED_APPS=[],
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    )
    django.setup()
    from django.db import connection, models, transaction
    from django.http import HttpRequest, JsonResponse

    class Order(models.Model):
        item = models.CharField(max_length=100)

        class Meta:
            app_label = "shop"

    with connection.schema_editor() as editor:
        editor.create_model(Order)

    app = make_app(store=SqlStore(f"sqlite:///{database}"), handlers=[ShipOrderHandler])
    scheduler = app.injector.get(SyncScheduler)
    scheduler.open()  # creates the store's tables in the same file, at start-up

    def create_order(request: HttpRequest) -> JsonResponse:
        with transaction.atomic():
            order = Order.objects.create(item=request.POST["item"])
            command_id = scheduler.schedule(ShipOrder(order_id=order.pk), session=connection)
            if request.POST.get("decline"):
                raise ValueError("payment declined")
        return JsonResponse({"order": order.pk, "command": command_id}, status=201)

    ShipOrderHandler.database = database
    try:
        yield Project(database, Order, create_order, scheduler, app)
    finally:
        scheduler.close()
        connection.close()


def _post(project: Project, **data: str) -> Any:
    from django.test import RequestFactory

    return project.view(RequestFactory().post("/orders", data))


def _entries(database: Path) -> int:
    with sqlite3.connect(database) as conn:
        return int(conn.execute("SELECT count(*) FROM scheduled_commands").fetchone()[0])


def test_rolled_back_view_stores_neither_row_nor_command(project: Project) -> None:
    before = _entries(project.database)
    with pytest.raises(ValueError, match="payment declined"):
        _post(project, item="lamp", decline="yes")
    assert not project.order_model.objects.filter(item="lamp").exists()
    assert _entries(project.database) == before


def test_committed_view_runs_the_command_with_the_row_visible(project: Project) -> None:
    import json

    response = _post(project, item="book")
    assert response.status_code == 201
    body = json.loads(response.content)
    entry = project.scheduler.get_status(body["command"])
    assert entry is not None and entry.status is ScheduledCommandStatus.PENDING
    assert asyncio.run(project.worker.service.run_until_idle()) == 1
    assert ShipOrderHandler.shipped == ["book"]
    done = project.scheduler.get_status(body["command"])
    assert done is not None and done.status is ScheduledCommandStatus.COMPLETED
    assert done.result_payload == '"book"'
