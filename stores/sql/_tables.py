"""The SQL schema, in one place: tables as SQLModel classes, indexes, and the schema version.

``SCHEMA_VERSION`` is bumped with every change of these definitions, together with a migration step; a database
whose version row is newer than this code is refused. ``ENTRIES``, ``ATTEMPTS``, ``SCHEDULES``, ``SCHEMA``,
``WORKERS`` and ``AUDIT`` are the tables every query of the package is written against, defined here once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    literal_column,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import registry
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from ._rows import UnreadableValue

__all__ = [
    "FINISHED_INDEX",
    "ATTEMPTS",
    "AUDIT",
    "DEPENDENCIES",
    "ENTRIES",
    "FAILING_ATTEMPTS_SQL",
    "ANY_DUE_TIME_SQL",
    "NEXT_DUE_SQL",
    "PENDING_DUE_INDEX",
    "PENDING_DUE_SQL",
    "any_due_time",
    "QUEUES",
    "QUEUE_STARTS",
    "SCHEDULES",
    "SCHEMA",
    "SCHEMA_VERSION",
    "WORKERS",
    "AttemptRow",
    "OUTCOME_HOURS",
    "OUTCOME_ROLLUP",
    "AuditRow",
    "DependencyRow",
    "EntryRow",
    "OutcomeHourRow",
    "OutcomeRollupRow",
    "QueueRow",
    "QueueStartRow",
    "ScheduleRow",
    "SchemaVersionRow",
    "UtcDateTime",
    "WorkerRow",
    "metadata",
]

#: The attempts after which an entry is retried or dead-lettered, as SQL: the predicate of the partial index of
#: failing attempts, written the same in the queries that use it (SQLite uses a partial index only then).
FAILING_ATTEMPTS_SQL = "outcome IN ('failed', 'lost', 'timed_out')"

#: Version of the schema these definitions create.
SCHEMA_VERSION = 13

#: The inserts' ``ON CONFLICT (idempotency_key) WHERE ...`` predicate: it matches today's unique constraint and a
#: partial unique index of the keys that are set alike, so a later step may make the index partial.
HELD_KEY = text("idempotency_key IS NOT NULL")
#: Finished entries by status and finish time, of the entries that have one (schema version 12).
FINISHED_INDEX = "ix_scheduled_commands_finished_at"
#: PostgreSQL's index of PENDING entries by due time (schema version 13): the next due time, and counts and searches
#: of PENDING entries by due time; SQLite keeps ``ix_scheduled_commands_next_due`` (see ``_pending_due.py``).
PENDING_DUE_INDEX = "ix_scheduled_commands_pending_due"
#: A condition true of every due time (none sorts before '-infinity'), which no claim states: the queries of PENDING
#: entries by due time state it on PostgreSQL, so that ``PENDING_DUE_INDEX`` serves them (see ``_pending_due.py``).
ANY_DUE_TIME_SQL = "scheduled_for >= '-infinity'"
#: That index's predicate.
PENDING_DUE_SQL = f"status = 'PENDING' AND {ANY_DUE_TIME_SQL}"
#: The next due time's condition: PENDING entries due after '-infinity' (which implies the index's predicate). A row
#: holding '-infinity' is unreadable: a claim takes and dead-letters it, and it must not hide the real next due time
#: (in a paused queue, or one no worker serves, it would stay, and the workers fall back to polling).
NEXT_DUE_SQL = "status = 'PENDING' AND scheduled_for > '-infinity'"


def any_due_time(column: Any) -> Any:
    """``column >= '-infinity'``: ``ANY_DUE_TIME_SQL`` for a column expression (a query's own alias of the table)."""
    return column >= literal_column("'-infinity'::timestamptz")


class _StoreModel(SQLModel, registry=registry()):
    """Base of the store's tables: their own metadata, so an application's ``SQLModel.metadata.create_all()``,
    ``drop_all()`` or Alembic autogenerate never touches them by accident."""


metadata = _StoreModel.metadata

#: A 64-bit key that is still SQLite's auto-incrementing ``INTEGER PRIMARY KEY`` (the rowid alias).
_BIGINT_KEY = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """UTC-aware datetimes everywhere: ``timestamptz`` on PostgreSQL; naive UTC text on SQLite, aware on the way out.

    SQLite's text form sorts chronologically because every value is written in UTC with microseconds.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(DateTime(timezone=False))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} cannot be stored; use UTC-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: object, dialect: Dialect) -> Any:
        """An aware datetime, None, or an ``UnreadableValue`` for a value that is no timestamp."""
        if value is None:
            return None
        if not isinstance(value, datetime):  # written behind the library's back: read per row, never fatal
            return UnreadableValue(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        process = super().result_processor(dialect, coltype)
        if process is None:  # pragma: no cover - process_result_value is defined
            return None

        def tolerant(value: Any) -> Any:
            # SQLite's text parser raises on a value that is not a timestamp (any value fits any SQLite column):
            # it becomes an UnreadableValue, so one row's value never fails the other rows of a result.
            try:
                return process(value)
            except Exception:  # noqa: BLE001 - whatever the parser raises, the value is unreadable
                return UnreadableValue(value)

        return tolerant


def _when(**kwargs: Any) -> Any:
    return Field(sa_type=UtcDateTime, **kwargs)


class EntryRow(_StoreModel, table=True):
    """One scheduled command. ``seq`` gives scheduling order (FIFO among equals); ``id`` is the public id."""

    __tablename__ = "scheduled_commands"

    seq: int | None = Field(default=None, primary_key=True, sa_type=_BIGINT_KEY)
    id: str = Field(sa_type=String(64), nullable=False)
    command_type: str = Field(sa_type=String(512), nullable=False)
    payload: str = Field(sa_type=Text, nullable=False)
    status: str = Field(sa_type=String(16), nullable=False)
    priority: int = Field(default=0, nullable=False)
    scheduled_for: datetime = _when(nullable=False)
    created_at: datetime = _when(nullable=False)
    started_at: datetime | None = _when(default=None)
    completed_at: datetime | None = _when(default=None)
    expires_at: datetime | None = _when(default=None)
    retry_count: int = Field(default=0, nullable=False)
    attempt_count: int = Field(default=0, nullable=False)
    max_retries: int = Field(default=3, nullable=False)
    correlation_id: str | None = Field(default=None, sa_type=String(256))
    metadata_json: str | None = Field(default=None, sa_type=Text)
    idempotency_key: str | None = Field(default=None, sa_type=String(512))
    error_message: str | None = Field(default=None, sa_type=Text)
    result_payload: str | None = Field(default=None, sa_type=Text)
    timeout_seconds: float | None = Field(default=None)
    lease_owner: str | None = Field(default=None, sa_type=String(256))
    lease_token: str | None = Field(default=None, sa_type=String(64))
    lease_expires_at: datetime | None = _when(default=None)
    #: The recurring schedule this entry is an occurrence of, and the occurrence's nominal time.
    recurring_name: str | None = Field(default=None, sa_type=String(200))
    occurrence_at: datetime | None = _when(default=None)
    #: The schedule's generation the occurrence belongs to (schema version 2).
    occurrence_generation: int | None = Field(default=None)
    #: The trace context at schedule() (OpenTelemetry propagator fields as JSON; schema version 4).
    trace_context: str | None = Field(default=None, sa_type=Text)
    #: The queue the entry waits in, and the lock it holds while PROCESSING (schema version 5).
    queue: str = Field(sa_type=String(100), nullable=False, sa_column_kwargs={"server_default": "default"})
    lock: str | None = Field(default=None, sa_type=String(256))
    #: When the worker holding this PROCESSING entry was asked to cancel its attempt (schema version 6).
    cancel_requested_at: datetime | None = _when(default=None)
    #: The running slot of its queue this PROCESSING entry holds, when the queue has ``max_running`` (PostgreSQL;
    #: see ``_pg_claim.py``). Left behind when the entry leaves PROCESSING: only PROCESSING entries hold one.
    queue_slot: int | None = Field(default=None)
    #: While WAITING: its parents that have not met its condition yet (schema version 10, dependencies).
    pending_parents: int = Field(nullable=False, sa_column_kwargs={"server_default": "0"})
    #: Whether any entry was scheduled after this one: its outcome then also updates those (schema version 10).
    has_dependants: bool = Field(sa_type=Boolean, nullable=False, sa_column_kwargs={"server_default": text("false")})

    __table_args__ = (
        # Unique ids and idempotency keys. PostgreSQL (schema version 12): one unique index of ids with
        # ``text_pattern_ops``, which answers both ``id = ...`` and "ids starting with" (one index written per row
        # version instead of two). The idempotency keys keep their unique constraint: processes of version 11, still
        # running during a rolling upgrade, insert with ``ON CONFLICT (idempotency_key)``, which PostgreSQL cannot
        # match to a partial index (a later step may make it partial once no such process can remain). SQLite keeps
        # the UNIQUE constraints of its CREATE TABLE (dropping one means rebuilding the table).
        UniqueConstraint("id").ddl_if(dialect="sqlite"),
        UniqueConstraint("idempotency_key"),
        Index("ux_scheduled_commands_id", "id", unique=True, postgresql_ops={"id": "text_pattern_ops"}).ddl_if(
            dialect="postgresql"
        ),
        # "Next due by priority, for one queue and command type": per (queue, type) a walk down the distinct
        # priorities, one index range scan each (see the claim queries): routing costs index probes, not scans.
        Index(
            "ix_scheduled_commands_routed_due",
            "queue",
            "command_type",
            "priority",
            "scheduled_for",
            "seq",
            postgresql_where=text("status = 'PENDING'"),
            sqlite_where=text("status = 'PENDING'"),
        ),
        # At most one PROCESSING entry per lock: the claim skips locked entries, and this makes a race an error.
        Index(
            "ux_scheduled_commands_lock",
            "lock",
            unique=True,
            postgresql_where=text("status = 'PROCESSING' AND lock IS NOT NULL"),
            sqlite_where=text("status = 'PROCESSING' AND lock IS NOT NULL"),
        ),
        # At most one PROCESSING entry per running slot of a queue: two claims racing for a slot of a queue at its
        # ``max_running`` cannot both win (entries claimed without a slot, NULL, are distinct). Counts a queue's
        # PROCESSING entries too.
        Index(
            "ux_scheduled_commands_queue_slot",
            "queue",
            "queue_slot",
            unique=True,
            postgresql_where=text("status = 'PROCESSING'"),
            sqlite_where=text("status = 'PROCESSING'"),
        ),
        # "When is the next entry due?" (the worker asks before every sleep): the first key of an index scan. On
        # PostgreSQL (schema version 13) under a predicate no claim implies, so that no claim can read through it.
        Index("ix_scheduled_commands_next_due", "scheduled_for", sqlite_where=text("status = 'PENDING'")).ddl_if(
            dialect="sqlite"
        ),
        Index(PENDING_DUE_INDEX, "scheduled_for", postgresql_where=text(PENDING_DUE_SQL)).ddl_if(dialect="postgresql"),
        Index(
            "ix_scheduled_commands_lease",
            "lease_expires_at",
            postgresql_where=text("status = 'PROCESSING'"),
            sqlite_where=text("status = 'PROCESSING'"),
        ),
        Index("ix_scheduled_commands_status", "status", "seq"),
        Index("ix_scheduled_commands_type", "command_type", "seq"),
        # Finished entries by status and finish time (purge, outcome counts): only rows with a finish time are in it
        # (schema version 12), so a new entry and its claim write nothing here; every query of it bounds
        # completed_at, which implies IS NOT NULL.
        Index(
            FINISHED_INDEX,
            "status",
            "completed_at",
            postgresql_where=text("completed_at IS NOT NULL"),
            sqlite_where=text("completed_at IS NOT NULL"),
        ),
        # "Created in this range, newest first" (the entries search): without it a past range reads every newer row
        # first. Built by the schema step ``entries_search_indexes`` on existing databases (``_search_indexes.py``).
        Index("ix_scheduled_commands_created_seq", "created_at", "seq"),
        # "Dead letters per command type" (the overview): only dead letters are in it, so it costs the hot path
        # nothing and the count reads the index alone.
        Index(
            "ix_scheduled_commands_dead_letters",
            "command_type",
            postgresql_where=text("status = 'FAILED'"),
            sqlite_where=text("status = 'FAILED'"),
        ),
        Index(
            "ix_scheduled_commands_correlation",
            "correlation_id",
            postgresql_where=text("correlation_id IS NOT NULL"),
            sqlite_where=text("correlation_id IS NOT NULL"),
        ),
        # "The latest occurrences of a schedule, whatever their status" (the dashboard's schedule page).
        Index(
            "ix_scheduled_commands_occurrences",
            "recurring_name",
            "seq",
            postgresql_where=text("recurring_name IS NOT NULL"),
            sqlite_where=text("recurring_name IS NOT NULL"),
        ),
        # "The pending occurrences of a schedule" (pause, update, remove).
        Index(
            "ix_scheduled_commands_recurring",
            "recurring_name",
            postgresql_where=text("status = 'PENDING' AND recurring_name IS NOT NULL"),
            sqlite_where=text("status = 'PENDING' AND recurring_name IS NOT NULL"),
        ),
    )


class DependencyRow(_StoreModel, table=True):
    """One (parent, dependant) pair of ``ScheduleOptions.after`` (schema version 10); see stores/dependencies.py."""

    __tablename__ = "scheduled_command_dependencies"

    seq: int | None = Field(default=None, primary_key=True, sa_type=_BIGINT_KEY)
    parent_id: str = Field(sa_type=String(64), nullable=False, index=True)
    child_id: str = Field(sa_type=String(64), nullable=False, index=True)
    #: The dependant's condition: every parent COMPLETED (True) or every parent ended (False).
    on_success_only: bool = Field(sa_type=Boolean, nullable=False)
    #: Whether the parent's outcome was counted for the dependant (each pair counts once).
    resolved: bool = Field(default=False, sa_type=Boolean, nullable=False)


class AttemptRow(_StoreModel, table=True):
    """One attempt at running an entry: the audit trail."""

    __tablename__ = "scheduled_command_attempts"

    seq: int | None = Field(default=None, primary_key=True, sa_type=_BIGINT_KEY)
    entry_id: str = Field(sa_type=String(64), nullable=False, index=True)
    attempt: int = Field(nullable=False)
    worker_id: str = Field(sa_type=String(256), nullable=False)
    started_at: datetime = _when(nullable=False)
    finished_at: datetime = _when(nullable=False)
    outcome: str = Field(sa_type=String(16), nullable=False)
    error: str | None = Field(default=None, sa_type=Text)

    __table_args__ = (
        # "Retried attempts per minute or hour" (outcomes over time): failing attempts only, by when they ended.
        Index(
            "ix_scheduled_command_attempts_failing",
            "finished_at",
            postgresql_where=text(FAILING_ATTEMPTS_SQL),
            sqlite_where=text(FAILING_ATTEMPTS_SQL),
        ),
    )


class ScheduleRow(_StoreModel, table=True):
    """One recurring schedule (its occurrences are ordinary rows of ``scheduled_commands``)."""

    __tablename__ = "recurring_schedules"

    name: str = Field(sa_type=String(200), primary_key=True)
    command_type: str = Field(sa_type=String(512), nullable=False)
    payload: str = Field(sa_type=Text, nullable=False)
    cron: str | None = Field(default=None, sa_type=String(256))
    #: The interval in microseconds (exact), for interval schedules.
    interval_us: int | None = Field(default=None, sa_type=BigInteger)
    timezone: str = Field(sa_type=String(64), nullable=False)
    options_json: str = Field(sa_type=Text, nullable=False)
    misfire_policy: str = Field(sa_type=String(16), nullable=False)
    paused: bool = Field(default=False, sa_type=Boolean, nullable=False)
    generation: int = Field(default=1, nullable=False)
    next_run_at: datetime | None = _when(default=None)
    last_run_at: datetime | None = _when(default=None)
    created_at: datetime = _when(nullable=False)
    updated_at: datetime = _when(nullable=False)


class QueueRow(_StoreModel, table=True):
    """A queue that is paused or limited (schema version 3); other queues exist only as entries' ``queue``."""

    __tablename__ = "scheduled_queues"

    name: str = Field(sa_type=String(100), primary_key=True)
    paused: bool = Field(default=False, sa_type=Boolean, nullable=False)
    #: Fleet-wide limits (not enforced yet): PROCESSING entries at once, and starts per period.
    max_running: int | None = Field(default=None)
    rate_count: int | None = Field(default=None)
    rate_per_us: int | None = Field(default=None, sa_type=BigInteger)
    updated_at: datetime = _when(nullable=False)


class QueueStartRow(_StoreModel, table=True):
    """One start slot of a rate limited queue: when it was last taken (PostgreSQL; see ``_pg_claim.py``).

    A queue limited to ``count`` starts per period has up to ``count`` slots, created as claims first need them.
    """

    __tablename__ = "scheduled_queue_starts"

    queue: str = Field(sa_type=String(100), primary_key=True)
    slot: int = Field(primary_key=True, sa_type=Integer)
    started_at: datetime = _when(nullable=False)

    __table_args__ = (Index("ix_scheduled_queue_starts_started", "queue", "started_at"),)


class SchemaVersionRow(_StoreModel, table=True):
    """A single row: the version of the schema in this database."""

    __tablename__ = "scheduled_commands_schema"

    id: int = Field(default=1, primary_key=True)
    version: int = Field(nullable=False)
    updated_at: datetime = _when(nullable=False)


class WorkerRow(_StoreModel, table=True):
    """One worker process of the fleet: what it said at registration and its latest heartbeat (schema version 3).

    Whether a worker is gone is decided above the store, from ``last_seen_at`` and ``lease_seconds``.
    """

    __tablename__ = "scheduler_workers"

    worker_id: str = Field(sa_type=String(256), primary_key=True)
    host: str = Field(sa_type=String(256), nullable=False)
    pid: int = Field(nullable=False)
    #: JSON lists of names.
    queues_json: str = Field(sa_type=Text, nullable=False)
    command_types_json: str = Field(sa_type=Text, nullable=False)
    started_at: datetime = _when(nullable=False)
    last_seen_at: datetime = _when(nullable=False, index=True)
    lease_seconds: float = Field(nullable=False)
    #: running, stopping or stopped.
    state: str = Field(sa_type=String(16), nullable=False)
    stopped_at: datetime | None = _when(default=None)


class AuditRow(_StoreModel, table=True):
    """One operator action of the audit trail (schema version 7): who did what to which entries, when, from where."""

    __tablename__ = "scheduler_audit"

    seq: int | None = Field(default=None, primary_key=True, sa_type=_BIGINT_KEY)
    at: datetime = _when(nullable=False, index=True)
    #: dashboard, api, cli or library.
    source: str = Field(sa_type=String(16), nullable=False)
    actor: str = Field(sa_type=String(256), nullable=False)
    action: str = Field(sa_type=String(64), nullable=False)
    #: A JSON list of entry ids (empty for an action on a filter or a schedule).
    entry_ids_json: str = Field(sa_type=Text, nullable=False)
    target: str | None = Field(default=None, sa_type=String(1024))
    count: int = Field(nullable=False)
    client: str | None = Field(default=None, sa_type=String(256))


class OutcomeRollupRow(_StoreModel, table=True):
    """Outcomes of one command type in one settled hour (schema version 8): the dashboard's history.

    Written once per hour by the first reader that asks for the hour after it has settled (``_outcomes.py``),
    never updated; purging entries leaves it, so the history outlives the entries.
    """

    __tablename__ = "scheduler_outcome_rollup"

    hour: datetime = Field(primary_key=True, sa_type=UtcDateTime)
    command_type: str = Field(primary_key=True, sa_type=String(512))
    #: completed, retried, failed or expired.
    outcome: str = Field(primary_key=True, sa_type=String(16))
    count: int = Field(nullable=False, sa_type=BigInteger)


class OutcomeHourRow(_StoreModel, table=True):
    """An hour whose outcomes are in ``scheduler_outcome_rollup`` (an hour with none has a row here only)."""

    __tablename__ = "scheduler_outcome_hours"

    hour: datetime = Field(primary_key=True, sa_type=UtcDateTime)
    rolled_up_at: datetime = _when(nullable=False)


ENTRIES: Table = EntryRow.__table__  # type: ignore[attr-defined]
ATTEMPTS: Table = AttemptRow.__table__  # type: ignore[attr-defined]
SCHEDULES: Table = ScheduleRow.__table__  # type: ignore[attr-defined]
SCHEMA: Table = SchemaVersionRow.__table__  # type: ignore[attr-defined]
WORKERS: Table = WorkerRow.__table__  # type: ignore[attr-defined]
QUEUES: Table = QueueRow.__table__  # type: ignore[attr-defined]
AUDIT: Table = AuditRow.__table__  # type: ignore[attr-defined]
OUTCOME_ROLLUP: Table = OutcomeRollupRow.__table__  # type: ignore[attr-defined]
OUTCOME_HOURS: Table = OutcomeHourRow.__table__  # type: ignore[attr-defined]
QUEUE_STARTS: Table = QueueStartRow.__table__  # type: ignore[attr-defined]
DEPENDENCIES: Table = DependencyRow.__table__  # type: ignore[attr-defined]
