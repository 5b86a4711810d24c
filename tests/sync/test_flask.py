"""A Flask application with Flask-SQLAlchemy on the store's database (SQLite, PostgreSQL): a view adds a row and
schedules a command in the request's session (``db.session``). Rolled back: neither exists; committed: a worker runs
the command and sees the row. Driven through ``app.test_client()``."""

from __future__ import annotations

import asyncio

import pytest
from scheduling_app import make_app
from sqlalchemy import create_engine, text
from sync_support import blocking_url

from mediator import Command, CommandHandler
from scheduling import ScheduledCommandStatus
from scheduling.sync import SyncScheduler
from stores import SqlStore

flask = pytest.importorskip("flask")
flask_sqlalchemy = pytest.importorskip("flask_sqlalchemy")


class SendInvoice(Command[str]):
    order_id: int


class SendInvoiceHandler(CommandHandler[SendInvoice, str]):
    #: The blocking URL of the database the handler reads the order from (set by the test).
    database: str | None = None
    sent: list[str] = []  # noqa: RUF012 - the test reads what the handler saw

    async def handle(self, command: SendInvoice) -> str:
        item = await asyncio.to_thread(self._read_item, command.order_id) or "<no such order>"
        SendInvoiceHandler.sent.append(item)
        return item

    def _read_item(self, order_id: int) -> str | None:
        assert self.database is not None
        engine = create_engine(self.database)
        try:
            with engine.connect() as conn:
                return conn.execute(text("SELECT item FROM orders WHERE id = :id"), {"id": order_id}).scalar()
        finally:
            engine.dispose()


def test_flask_view_schedules_in_the_request_session(sql_url: str) -> None:
    from flask import Flask, request
    from flask_sqlalchemy import SQLAlchemy

    database = blocking_url(sql_url)
    db = SQLAlchemy()

    class Order(db.Model):  # type: ignore[name-defined, misc]
        __tablename__ = "orders"
        id = db.Column(db.Integer, primary_key=True)
        item = db.Column(db.String(100), nullable=False)

    worker = make_app(store=SqlStore(sql_url), handlers=[SendInvoiceHandler])
    scheduler = worker.injector.get(SyncScheduler)
    scheduler.open()  # at start-up: creates the store's tables before any request's transaction
    SendInvoiceHandler.database = database

    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = database
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
        with app.app_context(), db.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM orders")).scalar_one() == 0
            assert conn.execute(text("SELECT count(*) FROM scheduled_commands")).scalar_one() == 0

        created = client.post("/orders", data={"item": "book"})
        assert created.status_code == 201
        command_id = created.get_json()["command"]
        assert asyncio.run(worker.service.run_until_idle()) == 1
        assert SendInvoiceHandler.sent[-1:] == ["book"]
        entry = scheduler.get_status(command_id)
        assert entry is not None and entry.status is ScheduledCommandStatus.COMPLETED
    finally:
        scheduler.close()
        with app.app_context():
            db.drop_all()  # the PostgreSQL database is shared by the run's tests
            db.engine.dispose()
