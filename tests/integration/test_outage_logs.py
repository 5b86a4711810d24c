"""What an operator reads while the database is away: one WARNING line per retry, the traceback only at DEBUG.

The outage is real and confined to this test: a database of its own on the test server stops accepting connections
(``ALLOW_CONNECTIONS false``) and its connections are terminated; the server itself is never touched.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from injector import Injector
from sqlalchemy.engine import make_url

from mediator import Command, CommandHandler, MediatorModule
from scheduling import CommandScheduler, ScheduledCommandService, SchedulerSettings, SchedulingModule
from stores import SqlStore


class Ping(Command[None]):
    pass


class PingHandler(CommandHandler[Ping, None]):
    async def handle(self, command: Ping) -> None:
        return None


def _conninfo(url: str, database: str) -> str:
    return make_url(url).set(drivername="postgresql", database=database).render_as_string(hide_password=False)


@pytest.fixture
def outage_database(postgres_url: str) -> Iterator[tuple[str, str]]:
    """A database of this test's own (URL, admin conninfo), dropped at the end even when the test fails."""
    name = f"cqrs_outage_{uuid.uuid4().hex[:12]}"
    admin = _conninfo(postgres_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False), admin
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _cut_off(admin: str, database: str, *, allow: bool) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {"true" if allow else "false"}')
        if not allow:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )


def _is_claim_warning(record: logging.LogRecord) -> bool:
    return record.__dict__.get("action") == "claim_failed" and record.levelno == logging.WARNING


@pytest.mark.timeout(60)
async def test_a_store_outage_is_one_warning_line_per_retry(
    outage_database: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """While the database refuses connections, every record the library writes at INFO or above is one line without
    a traceback or SQL; the tracebacks are there at DEBUG; once it is back, commands run again."""
    url, admin = outage_database
    database = make_url(url).database
    assert database is not None
    store = SqlStore(url)
    injector = Injector(
        [
            MediatorModule(handlers=[PingHandler]),
            SchedulingModule(store=store, settings=SchedulerSettings(polling_interval=timedelta(seconds=0.05))),
        ]
    )
    scheduler = injector.get(CommandScheduler)
    caplog.set_level(logging.DEBUG, logger="scheduling")
    caplog.set_level(logging.DEBUG, logger="stores")
    async with store, injector.get(ScheduledCommandService):
        _cut_off(admin, database, allow=False)
        try:
            async with asyncio.timeout(30):
                while sum(_is_claim_warning(r) for r in caplog.records) < 3:
                    await asyncio.sleep(0.05)
        finally:
            _cut_off(admin, database, allow=True)
        command_id = await scheduler.schedule(Ping())
        async with asyncio.timeout(30):
            while (entry := await scheduler.get_status(command_id)) is None or entry.status != "COMPLETED":
                await asyncio.sleep(0.05)

    ours = [r for r in caplog.records if r.name.split(".")[0] in ("scheduling", "stores")]
    claim_failures = [r for r in ours if r.__dict__.get("action") == "claim_failed" and r.levelno > logging.DEBUG]
    assert len(claim_failures) >= 3
    assert all(r.levelno == logging.WARNING for r in claim_failures), "a transient failure is a WARNING"
    assert "is unavailable" in claim_failures[0].getMessage()
    for record in ours:
        if record.levelno >= logging.INFO:
            message = record.getMessage()
            assert record.exc_info is None, f"a traceback above DEBUG: {message}"
            assert "\n" not in message, message
            assert "SELECT" not in message and "UPDATE" not in message, message
    assert any(r.levelno == logging.DEBUG and r.exc_info for r in ours), "the traceback is kept at DEBUG"
