"""A Flask application with Flask-SQLAlchemy on the store's SQLite file: a view adds a row and schedules a command
in the request's session (``db.session``). Rolled back: neither exists; committed: a worker runs the command and
sees the row. Driven through ``app.test_client()``."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from scheduling_app import make_app

from mediator import Command, CommandHandler
from scheduling import ScheduledCommandStatus
from scheduling.sync import SyncScheduler
from stores import SqlStore

flask = pytest.importorskip("flask")
flask_sqlalchemy = pytest.importorskip("flask_sqlalchemy")


class SendInvoice(Command[str]):
    order_id: int


class SendInvoiceHandler(CommandHandler[SendInvoice, str]):
    database: Path | None = None
    sent: list[str] = []  # noqa: RUF012 - the test reads what the handler saw

    async def handle(self, command: SendInvoice) -> str:
        assert self.database is not None
        with sqlite3.connect(self.database) as conn:
            row = conn.execute("SELECT item FROM orders WHERE id = ?", (command.order_id,)).fetchone()
        item = row[0] if row else "<no such order>"
        SendInvoiceHandler.sent.append(item)
        return item


def test_flask_view_schedules_in_the_request_session(tmp_path: Path) -> None:
    from flask import Flask, request
    from flask_sqlalchemy import SQLAlchemy

    database = tmp_path / "shop.db"
    db = SQLAlchemy()

    class Order(db.Model):  # type: ignore[name-defined, misc]
        __tablename__ = "orders"
        id = db.Column(db.Integer, primary_key=True)
        item = db.Column(db.String(100), nullable=False)

    worker = make_app(store=SqlStore(f"sqlite:///{database}"), handlers=[SendInvoiceHandler])
    scheduler = worker.injector.get(SyncScheduler)
    scheduler.open()  # at start-up: creates the store's tables before any request's transaction
    SendInvoiceHandler.database = database

    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{database}"
    db.init_app(app)

    @app.post("/orders")
    def create_order() -> tuple[dict[str, object], int]:
        order = Order(item=request.form["item"])
        db.session.add(order)
        db.session.flush()  # the order's id
        command_id = scheduler.schedule(SendInvoice(order_id=order.id), session=db.session)
        if request.form.get("decline"):
            db.session.rollback()
            return {"error": "payment declined"}, 402
        db.session.commit()
        return {"order": order.id, "command": command_id}, 201

    try:
        with app.app_context():
            db.create_all()
        client = app.test_client()

        declined = client.post("/orders", data={"item": "lamp", "decline": "yes"})
        assert declined.status_code == 402
        with sqlite3.connect(database) as conn:
            assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 0
            assert conn.execute("SELECT count(*) FROM scheduled_commands").fetchone()[0] == 0

        created = client.post("/orders", data={"item": "book"})
        assert created.status_code == 201
        command_id = created.get_json()["command"]
        assert asyncio.run(worker.service.run_until_idle()) == 1
        assert SendInvoiceHandler.sent == ["book"]
        entry = scheduler.get_status(command_id)
        assert entry is not None and entry.status is ScheduledCommandStatus.COMPLETED
    finally:
        scheduler.close()
        with app.app_context():
            db.engine.dispose()
