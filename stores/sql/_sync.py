"""``SqlStore``'s tables from synchronous code: a blocking SQLAlchemy engine (sqlite3, psycopg 3) on the store's
database, for ``scheduling.sync.SyncScheduler``.

It writes the same rows as the async store, built by the same functions (``entry_to_row`` of ``_rows.py``, the
tables of ``_tables.py``), so a column added there is written here with no change. Its statements run on one of:

- a connection of its own engine (a transaction per call);
- a caller's SQLAlchemy ``Session`` or ``Connection``, inside the caller's transaction;
- a caller's Django connection, through Django's ``connection.cursor()`` inside ``transaction.atomic()``: the
  statements are compiled by SQLAlchemy for the database and run with Django's ``%s`` parameters.

Waking the workers: on PostgreSQL a ``NOTIFY`` on the store's channel in the same transaction (delivered on commit;
a rolled-back schedule wakes nobody); on SQLite the workers notice any commit to the file (``PRAGMA data_version``,
see ``_sqlite.py``), so nothing is sent.

The schema is the async store's: it is checked once per engine, a newer one is refused with ``SchemaVersionError``,
and a missing or older one is created or upgraded by the async store's own ``migrate()`` (the one event loop this
module ever runs, once, in a thread of its own).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, create_engine, event, insert, inspect, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Connection, Dialect, Row
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, scoped_session

from stores._transitions import CANCEL, REQUEUE, AddBatch, Transition, as_column_values
from stores.entries import AttemptRecord, ScheduledCommandEntry, ScheduledCommandStatus
from stores.errors import SchemaVersionError, SessionNotSupportedError, StoreUnavailableError

from ._backend import reason
from ._postgresql import NOTIFY_CHANNEL
from ._rows import attempt_from_row, entry_to_row, install_psycopg_loaders, readable, row_to_entry
from ._sqlite import _switch_to_wal
from ._store import SqlStore
from ._tables import ATTEMPTS, ENTRIES, HELD_KEY, SCHEMA, SCHEMA_VERSION
from ._urls import mask_url, same_database

__all__ = ["SyncSql", "is_django_connection", "sync_sql_for"]

_NOTIFY = text("SELECT pg_notify(:channel, :due)")


def is_django_connection(target: object) -> bool:
    """Whether ``target`` is a Django database connection (``django.db.connection`` or ``connections[alias]``),
    told by its class's module and attributes so that Django is never imported here."""
    module = type(target).__module__
    return (
        module.startswith(("django.db.", "django.utils.connection"))
        and hasattr(target, "settings_dict")
        and hasattr(target, "vendor")
        and callable(getattr(target, "cursor", None))
    )


class _Runner:
    """Where statements run: returns the rows of a statement that returns rows, else an empty list."""

    def __init__(self, run: Callable[[Any, Any], list[Row[Any]] | list[tuple[Any, ...]]]) -> None:
        self.run = run


class SyncSql:
    """Synchronous reads and writes of a ``SqlStore``'s tables (see the module docstring).

    Args:
        url: the store's URL (any driver name; the blocking driver of the same database is used).
        migrate: called once when the database has no schema or an older one; creates or upgrades it.
    """

    def __init__(self, url: URL, migrate: Callable[[], None], *, pool_size: int = 5) -> None:
        backend = url.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise ValueError(f"SyncScheduler supports SQLite and PostgreSQL, not {backend} ({mask_url(url)})")
        self._postgresql = backend == "postgresql"
        self._url = url.set(drivername="postgresql+psycopg" if self._postgresql else "sqlite+pysqlite")
        self.shown_url = mask_url(url)  # as the async store shows it: errors read the same
        self._migrate = migrate
        self._pool_size = pool_size
        self._engine: Engine | None = None
        #: SQLite: reads go through connections that never take the write lock (a caller's transaction may hold
        #: it while it reads); PostgreSQL reads through the one engine.
        self._reader: Engine | None = None
        self._lock = threading.RLock()
        #: Django's cursors take ``%s`` parameters on every database.
        self._django_dialect: Dialect = (
            postgresql.psycopg.dialect(paramstyle="format")  # type: ignore[no-untyped-call]
            if self._postgresql
            else sqlite.pysqlite.dialect(paramstyle="format")
        )

    # -- engine and schema ------------------------------------------------------------------------------------

    def open(self) -> Engine:
        """The engine, created and the schema checked on first use (thread-safe)."""
        engine = self._engine
        if engine is not None:
            return engine
        with self._lock:
            if self._engine is None:
                engine = self._create_engine()
                try:
                    self._check_schema(engine)
                except BaseException:
                    engine.dispose()
                    raise
                self._engine = engine
            return self._engine

    def close(self) -> None:
        with self._lock:
            for engine in (self._reader, self._engine):
                if engine is not None:
                    engine.dispose()
            self._engine = self._reader = None

    def _read(self) -> Engine:
        """The engine reads go through (the schema checked)."""
        engine = self.open()
        return engine if self._postgresql else self._sqlite_reader()

    def _sqlite_reader(self) -> Engine:
        with self._lock:
            if self._reader is None:
                self._reader = create_engine(self._url, connect_args={"timeout": 30})
                event.listen(self._reader, "connect", _prepare_sqlite_reader)
            return self._reader

    def _create_engine(self) -> Engine:
        if self._postgresql:
            engine = create_engine(self._url, pool_size=self._pool_size, max_overflow=self._pool_size)
            event.listen(engine, "connect", _prepare_postgresql)
        else:
            engine = create_engine(self._url, connect_args={"timeout": 30})
            event.listen(engine, "connect", _prepare_sqlite)
            event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine

    def _check_schema(self, engine: Engine) -> None:
        found = self._schema_version(engine)
        if found is not None and found > SCHEMA_VERSION:
            raise SchemaVersionError(self.shown_url, found, SCHEMA_VERSION)
        if found != SCHEMA_VERSION:
            self._migrate()
            found = self._schema_version(engine)
            if found != SCHEMA_VERSION:  # pragma: no cover - migrate() raises first
                raise SchemaVersionError(self.shown_url, found or 0, SCHEMA_VERSION)

    def _schema_version(self, engine: Engine) -> int | None:
        # On SQLite through a reader: a caller's transaction may hold the write lock (a Django view's atomic block).
        with self._unavailable(), (engine if self._postgresql else self._sqlite_reader()).connect() as conn:
            if not inspect(conn).has_table(SCHEMA.name):
                return None
            version = conn.execute(select(SCHEMA.c.version).where(SCHEMA.c.id == 1)).scalar_one_or_none()
            return int(version) if version is not None else None

    @contextmanager
    def _unavailable(self) -> Iterator[None]:
        try:
            yield
        except (OperationalError, InterfaceError) as exc:
            raise StoreUnavailableError(self.shown_url, reason(exc)) from exc

    @contextmanager
    def _own_transaction(self) -> Iterator[_Runner]:
        engine = self.open()
        with self._unavailable(), engine.begin() as conn:
            yield _Runner(lambda statement, parameters: _rows(conn.execute(statement, parameters)))

    # -- scheduling -------------------------------------------------------------------------------------------

    def add(self, entries: Sequence[ScheduledCommandEntry], session: object = None) -> list[str]:
        """Insert new entries in a transaction of our own, or in the caller's ``session``; with ``NOTIFY`` on
        PostgreSQL. Returns, per entry, its id, or the id of the entry already holding its idempotency key."""
        if not entries:
            return []
        try:
            self.open()  # the schema is checked (and created) before the caller's transaction writes to it
        except StoreUnavailableError as exc:
            if session is None or self._postgresql or "locked" not in exc.reason:
                raise
            raise StoreUnavailableError(
                exc.url,
                f"{exc.reason} (creating the scheduler's tables while your transaction holds SQLite's write lock: "
                "call SyncScheduler.open() at start-up, or run `cqrs-scheduling migrate`)",
            ) from exc
        try:
            if session is None:
                with self._own_transaction() as runner:
                    return self._insert(runner, entries)
            if is_django_connection(session):
                return self._insert_with_django(session, entries)
            runner = self._caller_runner(session)
            return self._insert(runner, entries)
        except IntegrityError as exc:
            raise ValueError(f"could not add entries: an id already exists ({reason(exc)})") from exc

    def _insert(self, runner: _Runner, entries: Sequence[ScheduledCommandEntry]) -> list[str]:
        """The async store's insert, blocking: plain entries in one statement, keyed ones skipping the keys held."""
        batch = AddBatch.of(entries)
        plain = [entry_to_row(entry) for entry in batch.plain]
        keyed = [entry_to_row(entry) for entry in batch.keyed]
        if plain:
            runner.run(insert(ENTRIES).inline(), plain if len(plain) > 1 else plain[0])
        holders: dict[str, str] = {}
        if keyed:
            statement = (
                (pg_insert if self._postgresql else sqlite_insert)(ENTRIES)
                .on_conflict_do_nothing(index_elements=["idempotency_key"], index_where=HELD_KEY)
                .inline()
            )
            runner.run(statement, keyed if len(keyed) > 1 else keyed[0])
            held = select(ENTRIES.c.idempotency_key, ENTRIES.c.id).where(ENTRIES.c.idempotency_key.in_(batch.keys))
            holders = {str(k): str(i) for k, i in runner.run(held, None)}
        if self._postgresql:
            self._notify(runner, min(e.scheduled_for for e in entries))
        return batch.ids(holders)

    def _notify(self, runner: _Runner, due: datetime) -> None:
        runner.run(_NOTIFY, {"channel": NOTIFY_CHANNEL, "due": str(due.timestamp())})

    def _caller_runner(self, session: object) -> _Runner:
        """A runner on a caller's SQLAlchemy ``Session`` (or ``scoped_session``, as Flask-SQLAlchemy's ``db.session``)
        or ``Connection``, refusing another database's."""
        if isinstance(session, scoped_session):
            session = session()
        if isinstance(session, Session):
            bind_url = session.get_bind().engine.url
            # SQLAlchemy's own method: SQLModel's subclass deprecates execute() for exec(), which only takes SELECTs.
            run: Callable[[Any, Any], Any] = lambda s, p: _rows(Session.execute(session, s, p))  # noqa: E731
        elif isinstance(session, Connection):
            bind_url = session.engine.url
            run = lambda s, p: _rows(session.execute(s, p))  # noqa: E731
        else:
            raise SessionNotSupportedError(
                f"SqlStore({self.shown_url})",
                f"{type(session).__qualname__} is not a SQLAlchemy Session or Connection, nor a Django connection",
            )
        self._check_same_database(bind_url)
        return _Runner(run)

    def _check_same_database(self, bind_url: URL) -> None:
        if not same_database(bind_url, self._url):
            raise SessionNotSupportedError(
                f"SqlStore({self.shown_url})",
                f"the session is bound to {mask_url(bind_url)}, another database than the store's",
            )

    def _insert_with_django(self, connection: Any, entries: Sequence[ScheduledCommandEntry]) -> list[str]:
        from django.db import transaction  # type: ignore[import-untyped]  # the caller uses Django

        self._check_same_database(_django_url(connection))
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            return self._insert(_Runner(lambda s, p: self._run_on_cursor(cursor, s, p)), entries)

    def _run_on_cursor(self, cursor: Any, statement: Any, parameters: Any) -> list[tuple[Any, ...]]:
        """Run a SQLAlchemy statement on a DB-API cursor (Django's): compiled for the database with positional
        ``%s`` parameters (what Django's cursors take on every database), each value converted by its column type
        as SQLAlchemy would (UTC timestamps)."""
        dialect = self._django_dialect
        many = isinstance(parameters, list)
        first: Mapping[str, Any] = (parameters[0] if many else parameters) or {}
        compiled = statement.compile(
            dialect=dialect, column_keys=list(first) or None, compile_kwargs={"render_postcompile": True}
        )
        names = compiled.positiontup or []
        processors = {}
        for name in names:
            bind = compiled.binds.get(name)
            processors[name] = bind.type.dialect_impl(dialect).bind_processor(dialect) if bind is not None else None

        def values(row: Mapping[str, Any] | None) -> tuple[Any, ...]:
            given = compiled.construct_params(row)
            converted = []
            for name in names:
                processor = processors[name]
                converted.append(processor(given[name]) if processor is not None else given[name])
            return tuple(converted)

        if many:
            cursor.executemany(compiled.string, [values(row) for row in parameters])
            return []
        cursor.execute(compiled.string, values(parameters))
        return list(cursor.fetchall()) if cursor.description is not None else []

    # -- operator actions and reads ---------------------------------------------------------------------------

    def transition(self, transition: Transition, condition: Any, now: datetime) -> list[ScheduledCommandEntry]:
        """Apply an operator transition to the matching rows, fenced by its source status; the changed entries
        (a requeue wakes the workers on PostgreSQL)."""
        statement = (
            update(ENTRIES)
            .where(condition, ENTRIES.c.status.in_([status.value for status in transition.sources]))
            .values(**as_column_values(transition.changes(now)))
            .returning(*ENTRIES.c)
        )
        with self._own_transaction() as runner:
            rows = runner.run(statement, None)
            if rows and transition is REQUEUE and self._postgresql:
                self._notify(runner, now)
        return readable(sorted(rows, key=lambda row: row.seq), transition.name)  # type: ignore[arg-type]

    def cancel(self, condition: Any, now: datetime) -> list[ScheduledCommandEntry]:
        """PENDING -> CANCELLED for the matching entries that are no part of a workflow: releasing or cancelling
        dependants is the async store's (``_dependencies.py``), so a WAITING entry or one with dependants is left
        alone here (``SyncScheduler`` says so)."""
        plain = ENTRIES.c.status == ScheduledCommandStatus.PENDING.value, ENTRIES.c.has_dependants.is_(False)
        return self.transition(CANCEL, and_(condition, *plain), now)

    def in_a_workflow(self, entry_id: str) -> bool:
        """Whether the entry is WAITING or has dependants (see ``cancel``)."""
        statement = select(ENTRIES.c.status, ENTRIES.c.has_dependants).where(ENTRIES.c.id == entry_id)
        with self._unavailable(), self._read().connect() as conn:
            row = conn.execute(statement).first()
        return row is not None and (row.status == ScheduledCommandStatus.WAITING.value or bool(row.has_dependants))

    def requeue(self, condition: Any, now: datetime) -> list[ScheduledCommandEntry]:
        return self.transition(REQUEUE, condition, now)

    def get(self, entry_id: str) -> ScheduledCommandEntry | None:
        with self._unavailable(), self._read().connect() as conn:
            row = conn.execute(select(ENTRIES).where(ENTRIES.c.id == entry_id)).first()
        return row_to_entry(row) if row is not None else None

    def get_attempts(self, entry_id: str) -> list[AttemptRecord]:
        statement = select(ATTEMPTS).where(ATTEMPTS.c.entry_id == entry_id).order_by(ATTEMPTS.c.seq)
        with self._unavailable(), self._read().connect() as conn:
            rows = conn.execute(statement).all()
        return [attempt_from_row(row) for row in rows]


def _rows(result: Any) -> list[Row[Any]]:
    return list(result.all()) if result.returns_rows else []


def _django_url(connection: Any) -> URL:
    """The database a Django connection uses, as a URL ``same_database`` compares."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return URL.create("sqlite", database=str(settings["NAME"]))
    if connection.vendor == "postgresql":
        return URL.create(
            "postgresql",
            host=settings.get("HOST") or None,
            port=int(settings["PORT"]) if settings.get("PORT") else None,
            database=settings.get("NAME"),
        )
    return URL.create(str(connection.vendor))


def _prepare_sqlite(dbapi_connection: Any, _record: Any) -> None:
    """What the async store's SQLite connections get (``_sqlite.py``): WAL, busy timeout, no implicit BEGIN."""
    dbapi_connection.isolation_level = None
    dbapi_connection.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    _switch_to_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _prepare_sqlite_reader(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # autocommit: a read takes no lock beyond its statement (WAL)
    dbapi_connection.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")
    dbapi_connection.execute("PRAGMA busy_timeout=30000")


def _prepare_postgresql(dbapi_connection: Any, _record: Any) -> None:
    """What the async store's PostgreSQL connections get: tolerant timestamp loaders, timestamps read in UTC."""
    install_psycopg_loaders(dbapi_connection)
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    try:
        dbapi_connection.execute("SET TIME ZONE 'UTC'")
    finally:
        dbapi_connection.autocommit = autocommit


def sync_sql_for(store: SqlStore) -> SyncSql:
    """The blocking counterpart of ``store``: the same database, the same pool size."""
    url = store._url
    return SyncSql(url, lambda: _migrate(url.render_as_string(hide_password=False)), pool_size=store._pool_size)


def _migrate(url: str) -> None:
    """Create or upgrade the schema with the async store's own ``migrate()``, on a store of its own (the caller's
    may belong to an event loop running elsewhere), in a thread of its own (the calling thread may run a loop)."""
    failure: list[BaseException] = []

    async def migrate() -> None:
        store = SqlStore(url)
        try:
            await store.migrate()
        finally:
            await store.close()

    def target() -> None:
        try:
            asyncio.run(migrate())
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="cqrs-scheduling-migrate")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
