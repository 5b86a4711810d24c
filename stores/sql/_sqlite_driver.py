"""The worker's SQLite statements (claim, outcome batch, attempts) sent at the driver level, their values converted by
the table's own column types.

SQLAlchemy's handling of a statement (compiling or finding it in its cache, processing each parameter and each value
of each row) cost the worker more than SQLite's work on these statements. Here each is plain SQL with ``:name``
parameters, run on the backend's own ``sqlite3`` connection straight through the driver, or through SQLAlchemy's
driver-level call (``exec_driver_sql``) on the engine's connection (a database in memory, a URI); either way the
parameters and the values read are converted by the processors of the columns' SQLAlchemy types, so a value reads
exactly as through a SQLAlchemy statement (an unreadable timestamp as ``UnreadableValue``, for one).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.types import TypeEngine

from ._pg_worker import Record

__all__ = ["Binder", "DriverCalls", "RowReader"]


class DriverCalls:
    """Driver-level statements on ``conn``: through the driver itself when it is ``sqlite3``'s connection."""

    def __init__(self, conn: Connection) -> None:
        self.dialect = conn.dialect
        driver = conn.connection.driver_connection
        self._driver = driver if isinstance(driver, sqlite3.Connection) else None
        self._conn = conn

    def fetch(self, statement: str, parameters: dict[str, Any] | Sequence[Any]) -> list[Sequence[Any]]:
        """The rows of ``statement``, each value as SQLite returns it."""
        if self._driver is not None:
            try:
                return self._driver.execute(statement, parameters).fetchall()
            except sqlite3.Error as exc:
                raise _as_sqlalchemy_error(statement, parameters, exc) from exc
        return list(self._conn.exec_driver_sql(statement, parameters).fetchall())

    def execute_many(self, statement: str, rows: Sequence[dict[str, Any] | Sequence[Any]]) -> None:
        if self._driver is not None:
            try:
                self._driver.executemany(statement, rows)
            except sqlite3.Error as exc:
                raise _as_sqlalchemy_error(statement, rows, exc) from exc
            return
        self._conn.exec_driver_sql(statement, rows)  # a list of rows: the driver's executemany


def _as_sqlalchemy_error(statement: str, parameters: Any, exc: sqlite3.Error) -> Exception:
    """The driver's error as SQLAlchemy raises it (``OperationalError`` for a locked or missing database, ...), so
    the store handles it as it handles the engine's."""
    from sqlalchemy.exc import DBAPIError

    return DBAPIError.instance(statement, parameters, exc, sqlite3.Error)


class Binder:
    """Converts values of one column type as SQLAlchemy binds them (``None`` stays ``None``), for a dialect."""

    def __init__(self, column_type: TypeEngine[Any]) -> None:
        self._type = column_type
        self._made: tuple[Dialect, Callable[[Any], Any] | None] | None = None

    def __call__(self, dialect: Dialect, value: Any) -> Any:
        if self._made is None or self._made[0] is not dialect:
            self._made = (dialect, self._type.dialect_impl(dialect).bind_processor(dialect))
        process = self._made[1]
        return value if value is None or process is None else process(value)


class RowReader:
    """Turns rows of ``columns`` as the driver returns them into ``Record``s of the values SQLAlchemy would read."""

    def __init__(self, columns: Sequence[ColumnElement[Any]]) -> None:
        self._columns = tuple(columns)
        self._names = [str(column.key) for column in self._columns]
        self._made: tuple[Dialect, list[tuple[int, Callable[[Any], Any]]]] | None = None

    def __call__(self, dialect: Dialect, rows: Iterable[Sequence[Any]]) -> list[Record]:
        if self._made is None or self._made[0] is not dialect:
            processors = [column.type.dialect_impl(dialect).result_processor(dialect, None) for column in self._columns]
            self._made = (dialect, [(i, process) for i, process in enumerate(processors) if process is not None])
        converting, names = self._made[1], self._names
        records = []
        for values in rows:
            row = list(values)
            for i, process in converting:
                row[i] = process(row[i])
            records.append(Record(zip(names, row, strict=True)))
        return records
