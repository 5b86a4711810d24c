"""Upgrading a database of the previous release (schema version 1) on SQLite and PostgreSQL.

The version-1 schema is built from the DDL that release's table definitions compiled to (``v1_*.sql`` beside this
file) and its version row, filled with entries in every status, attempts and recurring schedules (one paused, with
occurrences of two generations), then opened by today's store. Every row must survive, the occurrence generation
must be read into its column, and the upgraded schema must equal the schema a new database gets.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, insert, inspect, select, text

from stores.audit import AuditRecord
from stores.base import ScheduledCommandStore
from stores.dependencies import Dependency
from stores.entries import AttemptRecord, ScheduledCommandEntry, ScheduledCommandStatus
from stores.errors import SchemaVersionError
from stores.outcomes import HOUR, OutcomeCount
from stores.queues import QueueLimits, Route
from stores.sql import SqlStore
from stores.sql._migrations import MIGRATIONS
from stores.sql._tables import ATTEMPTS, ENTRIES, OUTCOME_ROLLUP, SCHEDULES, SCHEMA, SCHEMA_VERSION
from stores.workers import StoredWorker

HERE = Path(__file__).parent
BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
STATUSES = ("PENDING", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED", "EXPIRED")


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


@pytest.fixture(params=["sqlite", "postgresql"])
def make_database(
    request: pytest.FixtureRequest, tmp_path: Path, new_postgres_database: Callable[[str, str], str]
) -> Callable[[str], str]:
    """``make(hint)``: the sync URL of a new, empty database of the parametrized kind (removed after the test)."""
    if request.param == "sqlite":
        return lambda hint: f"sqlite:///{tmp_path / f'{hint}.db'}"
    base = request.getfixturevalue("postgres_url")
    return lambda hint: new_postgres_database(base, hint)


@pytest.fixture
def engine_for() -> Iterator[Callable[[str], Engine]]:
    engines: list[Engine] = []

    def make(url: str) -> Engine:
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()


def create_v1(engine: Engine) -> None:
    """The version-1 schema and version row, as the previous release created them."""
    ddl = (HERE / f"v1_{engine.dialect.name}.sql").read_text()
    with engine.begin() as conn:
        for statement in ddl.split(";"):
            body = "\n".join(line for line in statement.splitlines() if not line.startswith("--")).strip()
            if body:
                conn.exec_driver_sql(body)
        conn.execute(insert(SCHEMA).values(id=1, version=1, updated_at=BASE))


def v1_entry(number: int, status: str, **values: Any) -> dict[str, Any]:
    finished = status in ("COMPLETED", "FAILED", "CANCELLED", "EXPIRED")
    row: dict[str, Any] = {
        "id": f"entry-{number}",
        "command_type": "tests.migration.Report",
        "payload": f'{{"n": {number}}}',
        "status": status,
        "priority": number % 3,
        "scheduled_for": at(number),
        "created_at": at(0),
        "started_at": at(number + 1) if status != "PENDING" else None,
        "completed_at": at(number + 2) if finished else None,
        "expires_at": at(3600),
        "retry_count": 1 if status == "FAILED" else 0,
        "attempt_count": 0 if status == "PENDING" else 1,
        "max_retries": 3,
        "correlation_id": f"order-{number % 2}",
        "metadata_json": '{"tenant": "acme"}',
        "idempotency_key": None,
        "error_message": "boom" if status == "FAILED" else None,
        "result_payload": '"done"' if status == "COMPLETED" else None,
        "timeout_seconds": 30.0,
        "lease_owner": "worker-1" if status == "PROCESSING" else None,
        "lease_token": "a" * 32 if status == "PROCESSING" else None,
        "lease_expires_at": at(600) if status == "PROCESSING" else None,
        "recurring_name": None,
        "occurrence_at": None,
    }
    row.update(values)
    return row


def v1_schedule(name: str, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": name,
        "command_type": "tests.migration.Report",
        "payload": "{}",
        "cron": "0 2 * * *",
        "interval_us": None,
        "timezone": "Europe/Paris",
        "options_json": '{"priority": 1}',
        "misfire_policy": "skip",
        "paused": False,
        "generation": 1,
        "next_run_at": at(7200),
        "last_run_at": at(-86400),
        "created_at": at(-172800),
        "updated_at": at(-172800),
    }
    row.update(values)
    return row


def fill_v1(engine: Engine) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    entries = [v1_entry(number, status) for number, status in enumerate(STATUSES, start=1)]
    # A paused schedule (its generation bumped by the pause) with a cancelled occurrence of the generation before,
    # and an active interval schedule with a pending occurrence.
    entries.append(
        v1_entry(
            10,
            "CANCELLED",
            recurring_name="nightly:eu",
            occurrence_at=at(10),
            idempotency_key=f"recurring:nightly:eu:2:{at(10).isoformat()}",
        )
    )
    entries.append(
        v1_entry(
            11,
            "PENDING",
            recurring_name="every-minute",
            occurrence_at=at(60),
            idempotency_key=f"recurring:every-minute:1:{at(60).isoformat()}",
        )
    )
    schedules = [
        v1_schedule("nightly:eu", paused=True, generation=3, next_run_at=None),
        v1_schedule("every-minute", cron=None, interval_us=60_000_000, generation=1),
    ]
    attempts = [
        {
            "entry_id": entry["id"],
            "attempt": 1,
            "worker_id": "worker-1",
            "started_at": at(number),
            "finished_at": at(number + 1),
            "outcome": "failed" if entry["status"] == "FAILED" else "completed",
            "error": "boom" if entry["status"] == "FAILED" else None,
        }
        for number, entry in enumerate(entries)
        if entry["attempt_count"]
    ]
    with engine.begin() as conn:
        conn.execute(insert(ENTRIES), entries)
        conn.execute(insert(SCHEDULES), schedules)
        conn.execute(insert(ATTEMPTS), attempts)
    return entries, schedules, attempts


def store_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


async def migrate(url: str) -> tuple[int | None, int]:
    store = SqlStore(store_url(url))
    try:
        return await store.migrate()
    finally:
        await store.close()


def table_rows(engine: Engine, columns: Any, order: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(select(*columns).order_by(order))]


#: Columns added to ``scheduled_commands`` after version 1, by the migration steps.
ADDED_ENTRY_COLUMNS = (
    "occurrence_generation",
    "trace_context",
    "queue",
    "lock",
    "cancel_requested_at",
    "queue_slot",
    "pending_parents",
    "has_dependants",
)
#: The columns of ``scheduled_commands`` in version 1.
V1_ENTRY_COLUMNS = [column for column in ENTRIES.c if column.name not in ADDED_ENTRY_COLUMNS]


def schema_of(engine: Engine) -> dict[str, Any]:
    """Columns (name, type, nullable), indexes (name, columns, unique, condition) and unique constraints."""
    inspector = inspect(engine)
    shape: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        columns = [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)]
        indexes = sorted(
            (
                ix["name"],
                tuple(ix["column_names"]),
                bool(ix["unique"]),
                str(ix.get("dialect_options", {}).get(f"{engine.dialect.name}_where", "")),
            )
            for ix in inspector.get_indexes(table)
        )
        uniques = sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table))
        shape[table] = {"columns": columns, "indexes": indexes, "uniques": uniques}
    return shape


def test_a_version_1_database_is_upgraded_keeping_every_row(
    make_database: Callable[[str], str], engine_for: Callable[[str], Engine]
) -> None:
    url = make_database("v1")
    engine = engine_for(url)
    create_v1(engine)
    entries, schedules, attempts = fill_v1(engine)
    entries_before = table_rows(engine, V1_ENTRY_COLUMNS, ENTRIES.c.seq)  # as version 1 stored them

    assert asyncio.run(migrate(url)) == (1, SCHEMA_VERSION)

    entries_after = table_rows(engine, ENTRIES.c, ENTRIES.c.seq)
    generations = {row["id"]: row.pop("occurrence_generation") for row in entries_after}
    trace_contexts = {row.pop("trace_context") for row in entries_after}
    routing = {(row.pop("queue"), row.pop("lock")) for row in entries_after}
    assert {row.pop("cancel_requested_at") for row in entries_after} == {None}  # no older entry was asked to stop
    assert {row.pop("queue_slot") for row in entries_after} == {None}  # no older entry holds a running slot
    # No older entry waits for a parent or has a dependant.
    assert {(row.pop("pending_parents"), row.pop("has_dependants")) for row in entries_after} == {(0, False)}
    assert entries_after == entries_before
    assert trace_contexts == {None}  # entries scheduled before tracing was stored have no trace context
    assert routing == {("default", None)}  # every stored entry waits in the default queue, holding no lock
    assert [row["id"] for row in entries_after] == [entry["id"] for entry in entries]
    assert generations == {entry["id"]: None for entry in entries} | {"entry-10": 2, "entry-11": 1}
    assert [
        {k: v for k, v in row.items() if k != "seq"} for row in table_rows(engine, ATTEMPTS.c, ATTEMPTS.c.seq)
    ] == attempts
    assert table_rows(engine, SCHEDULES.c, SCHEDULES.c.name) == sorted(schedules, key=lambda s: s["name"])
    with engine.connect() as conn:
        assert conn.execute(select(SCHEMA.c.version)).scalar_one() == SCHEMA_VERSION


def test_the_upgraded_store_works_and_reads_every_entry(
    make_database: Callable[[str], str], engine_for: Callable[[str], Engine]
) -> None:
    url = make_database("v1")
    engine = engine_for(url)
    create_v1(engine)
    entries, _, _ = fill_v1(engine)

    async def read() -> None:
        store = SqlStore(store_url(url))
        async with store:
            for entry in entries:
                stored = await store.get(entry["id"])
                assert stored is not None and stored.status.value == entry["status"]
            occurrence = await store.get("entry-11")
            assert occurrence is not None and occurrence.occurrence_generation == 1
            paused = await store.get_schedule("nightly:eu")
            assert paused is not None and paused.paused and paused.generation == 3
            # The column now decides which occurrences a definition change keeps.
            assert await store.cancel_occurrences("every-minute", now=at(100), keep_generation=1) == []
            cancelled = await store.cancel_occurrences("every-minute", now=at(100), keep_generation=2)
            assert [entry.id for entry in cancelled] == ["entry-11"]
            # Queues and locks work on the upgraded schema: the old rows are claimed from the default queue.
            await store.set_queue_paused("default", True)
            assert (
                await store.claim_due(now=at(10_000), limit=100, worker_id="w", lease_duration=timedelta(minutes=1))
                == []
            )
            await store.set_queue_paused("default", False)
            claimed = await store.claim_due(
                now=at(10_000),
                limit=100,
                worker_id="w",
                lease_duration=timedelta(minutes=1),
                route=Route.of(["default"], None),
            )
            assert claimed and {entry.queue for entry in claimed} == {"default"}

    asyncio.run(read())


def test_the_upgraded_schema_equals_a_new_one(
    make_database: Callable[[str], str], engine_for: Callable[[str], Engine]
) -> None:
    upgraded = make_database("upgraded")
    create_v1(engine_for(upgraded))
    fresh = make_database("fresh")

    assert asyncio.run(migrate(upgraded)) == (1, SCHEMA_VERSION)
    assert asyncio.run(migrate(fresh)) == (None, SCHEMA_VERSION)

    assert schema_of(engine_for(upgraded)) == schema_of(engine_for(fresh))
    fresh_columns = [c[0] for c in schema_of(engine_for(fresh))["scheduled_commands"]["columns"]]
    assert set(ADDED_ENTRY_COLUMNS) <= set(fresh_columns)
    assert "scheduler_workers" in schema_of(engine_for(upgraded))


def test_an_upgraded_database_keeps_a_worker_registry(
    make_database: Callable[[str], str], engine_for: Callable[[str], Engine]
) -> None:
    url = make_database("v1")
    create_v1(engine_for(url))
    assert "workers_table" in [step.name for step in MIGRATIONS]

    async def register_and_list() -> list[StoredWorker]:
        async with SqlStore(store_url(url)) as store:
            await store.register_worker(
                StoredWorker(
                    worker_id="w-1",
                    host="h",
                    pid=1,
                    started_at=BASE,
                    last_seen_at=BASE,
                    lease_duration=timedelta(seconds=30),
                )
            )
            return await store.list_workers()

    assert [worker.worker_id for worker in asyncio.run(register_and_list())] == ["w-1"]


def test_an_upgraded_database_keeps_an_audit_trail(
    make_database: Callable[[str], str], engine_for: Callable[[str], Engine]
) -> None:
    url = make_database("v1")
    create_v1(engine_for(url))
    assert "audit_table" in [step.name for step in MIGRATIONS]
    record = AuditRecord(at=BASE, source="cli", actor="ops@h", action="purge", count=3)

    async def add_and_list() -> list[AuditRecord]:
        async with SqlStore(store_url(url)) as store:
            await store.add_audit_record(record)
            return await store.list_audit_records()

    assert asyncio.run(add_and_list()) == [record]


def test_an_upgraded_database_rolls_up_the_outcomes_it_already_holds(
    make_database: Callable[[str], str], engine_for: Callable[[str], Engine]
) -> None:
    """The outcome rollup starts empty; the hours of the entries stored before the upgrade are rolled up when first
    asked for, from those entries, and answer what counting them one by one answers."""
    url = make_database("v1")
    engine = engine_for(url)
    create_v1(engine)
    fill_v1(engine)
    assert "outcome_rollup_tables" in [step.name for step in MIGRATIONS]

    async def counts() -> tuple[list[OutcomeCount], list[OutcomeCount]]:
        async with SqlStore(store_url(url)) as store:
            since, until = BASE - timedelta(hours=1), BASE + timedelta(days=1)
            rolled = await store.count_outcomes(since, until, unit=HOUR)
            scanned = await ScheduledCommandStore.count_outcomes(store, since, until, unit=HOUR)
            return rolled, scanned

    rolled, scanned = asyncio.run(counts())
    assert rolled == scanned
    assert {c.outcome for c in rolled} >= {"completed", "failed", "expired"}
    with engine.connect() as conn:
        assert conn.execute(select(OUTCOME_ROLLUP.c.count)).scalars().all()  # answered from the rollup


def test_an_entry_running_at_the_upgrade_counts_against_max_running(
    make_database: Callable[[str], str], engine_for: Callable[[str], Engine]
) -> None:
    """The PROCESSING entry of the version-1 database holds no running slot, yet counts: a limit of 1 on its queue
    leaves the PENDING entries waiting until it ends, then the claim takes one, holding a slot."""
    url = make_database("v1")
    create_v1(engine_for(url))
    fill_v1(engine_for(url))
    assert "queue_claim_slots" in [step.name for step in MIGRATIONS]

    async def claim_under_a_limit() -> tuple[list[str], list[str]]:
        async with SqlStore(store_url(url)) as store:
            await store.set_queue_limits("default", QueueLimits(max_running=1))
            lease = timedelta(minutes=1)
            blocked = await store.claim_due(now=at(10_000), limit=100, worker_id="w", lease_duration=lease)
            running = await store.get("entry-2")
            assert running is not None and running.lease_token is not None
            assert await store.release("entry-2", running.lease_token)
            claimed = await store.claim_due(now=at(10_000), limit=100, worker_id="w", lease_duration=lease)
            return [entry.id for entry in blocked], [entry.id for entry in claimed]

    blocked, claimed = asyncio.run(claim_under_a_limit())
    assert blocked == []
    assert len(claimed) == 1


def test_entries_of_an_upgraded_database_can_be_parents(
    make_database: Callable[[str], str], engine_for: Callable[[str], Engine]
) -> None:
    """Schema step 10 (dependencies): after the upgrade, a stored entry is a parent like a new one. A dependant of
    the version-1 COMPLETED entry is PENDING at once, one of the FAILED entry CANCELLED naming it, and one of the
    PENDING entry waits and is released by its completion."""
    url = make_database("v1")
    create_v1(engine_for(url))
    entries, _, _ = fill_v1(engine_for(url))
    by_status = {entry["status"]: entry["id"] for entry in entries if entry.get("recurring_name") is None}
    assert "dependencies_table_and_columns" in [step.name for step in MIGRATIONS]

    async def schedule_after() -> None:
        async with SqlStore(store_url(url)) as store:
            children = {status: _child(f"after-{status.lower()}") for status in ("COMPLETED", "FAILED", "PENDING")}
            after = {child.id: Dependency((by_status[status],)) for status, child in children.items()}
            await store.add_dependants(list(children.values()), after)
            statuses = {status: (await store.get(child.id)) for status, child in children.items()}
            assert {status: entry.status.value for status, entry in statuses.items() if entry} == {
                "COMPLETED": "PENDING",
                "FAILED": "CANCELLED",
                "PENDING": "WAITING",
            }
            assert by_status["FAILED"] in (statuses["FAILED"].error_message or "")  # type: ignore[union-attr]
            claimed = await store.claim_due(
                now=at(10_000), limit=100, worker_id="w", lease_duration=timedelta(minutes=1)
            )
            parent = next(entry for entry in claimed if entry.id == by_status["PENDING"])
            assert parent.lease_token is not None
            attempt = AttemptRecord(
                attempt=1, worker_id="w", started_at=at(10_000), finished_at=at(10_001), outcome="completed"
            )
            assert await store.complete(parent.id, parent.lease_token, result_payload=None, attempt=attempt)
            released = await store.get(children["PENDING"].id)
            assert released is not None and released.status.value == "PENDING"

    asyncio.run(schedule_after())


def _child(entry_id: str) -> ScheduledCommandEntry:
    return ScheduledCommandEntry(
        id=entry_id,
        command_type="tests.Child",
        payload="{}",
        status=ScheduledCommandStatus.PENDING,
        scheduled_for=at(0),
        created_at=at(0),
    )


def test_a_newer_schema_is_still_refused_and_left_alone(
    make_database: Callable[[str], str], engine_for: Callable[[str], Engine]
) -> None:
    url = make_database("newer")
    engine = engine_for(url)
    create_v1(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE scheduled_commands_schema SET version = :v"), {"v": SCHEMA_VERSION + 1})
    before = schema_of(engine)

    with pytest.raises(SchemaVersionError, match=rf"schema version {SCHEMA_VERSION + 1}, newer than"):
        asyncio.run(migrate(url))

    assert schema_of(engine) == before


_OPEN_AT_ONCE = textwrap.dedent(
    """
    import asyncio, os, sys, time
    from stores.sql import SqlStore

    url, go = sys.argv[1], sys.argv[2]
    while not os.path.exists(go):  # a start barrier: both processes open the database together
        time.sleep(0.001)

    async def main():
        store = SqlStore(url)
        try:
            found, _ = await store.migrate()
        finally:
            await store.close()
        print(found)

    asyncio.run(main())
    """
)


def test_two_processes_opening_a_version_1_database_at_once_migrate_it_once(
    make_database: Callable[[str], str], engine_for: Callable[[str], Engine], tmp_path: Path
) -> None:
    url = make_database("concurrent")
    engine = engine_for(url)
    create_v1(engine)
    fill_v1(engine)
    go = tmp_path / "go"
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_AT_ONCE, store_url(url), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        for _ in range(2)
    ]
    go.touch()
    outputs = [process.communicate(timeout=120) for process in processes]

    assert [process.returncode for process in processes] == [0, 0], [err for _, err in outputs]
    # Exactly one found version 1 and migrated; the other waited for the lock and found the current version.
    assert sorted(out.strip() for out, _ in outputs) == ["1", str(SCHEMA_VERSION)]
    with engine.connect() as conn:
        assert conn.execute(select(SCHEMA.c.version)).scalar_one() == SCHEMA_VERSION
        assert conn.execute(text("SELECT count(*) FROM scheduled_commands")).scalar_one() == len(STATUSES) + 2


def test_the_migrate_command_upgrades_then_finds_nothing_to_do(
    engine_for: Callable[[str], Engine], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = engine_for(url)
    create_v1(engine)
    fill_v1(engine)

    def run() -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "scheduling", "migrate", "--store", url]
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        return subprocess.run(command, capture_output=True, text=True, timeout=120, env=environment, check=False)

    first, second = run(), run()

    assert (first.returncode, first.stdout.strip()) == (0, f"migrated schema version 1 to {SCHEMA_VERSION}")
    assert (second.returncode, second.stdout.strip()) == (0, f"schema version {SCHEMA_VERSION} is current")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM scheduled_commands")).scalar_one() == len(STATUSES) + 2
