"""Reading stored rows one at a time: a value the database holds but Python cannot represent never fails a whole
query, and a row that does not convert to an entry is described (which column, what value), never fatal.

Rows can be written behind the library's back (a migration script, a manual ``UPDATE``, another version): the
database's own types are wider than the entry's (PostgreSQL's ``timestamptz`` holds ``'-infinity'`` and the year
20000; SQLite holds any value in any column). Such a value is read as an ``UnreadableValue`` instead of raising
in the driver, so the other rows of the same result are still read.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from .entries import ScheduledCommandEntry
from .errors import UnreadableEntryError

__all__ = ["UnreadableValue", "as_datetime", "install_psycopg_loaders", "read_entry"]

#: Where an entry field is stored under another column name.
_COLUMN_OF_FIELD = {"metadata": "metadata_json"}


class UnreadableValue:
    """A stored value its column's Python type cannot hold; ``raw`` is what the database returned."""

    __slots__ = ("raw",)

    raw: object

    def __init__(self, raw: object) -> None:
        self.raw = raw.raw if isinstance(raw, UnreadableValue) else raw

    def __repr__(self) -> str:
        return repr(self.raw)


def read_entry(values: Mapping[str, Any], metadata: dict[str, str] | None) -> ScheduledCommandEntry:
    """Convert one row's column values (``seq`` and ``metadata_json`` removed by the caller) to an entry.

    Raises:
        UnreadableEntryError: naming the first column whose value does not fit, and that value.
    """
    fields = dict(values)
    seq = fields.pop("seq", None)
    fields.pop("metadata_json", None)
    fields["metadata"] = metadata
    entry_id = fields.get("id")
    if isinstance(entry_id, str) and not entry_id.isascii():
        try:  # SQLite hands back bytes that are not UTF-8 as surrogate escapes: no write could name this id
            entry_id.encode()
        except UnicodeEncodeError:
            raise UnreadableEntryError(seq, None, "id", entry_id, "not valid UTF-8") from None
    try:
        return ScheduledCommandEntry.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "?"
        column = _COLUMN_OF_FIELD.get(field, field)
        value = values.get(column, error.get("input"))
        raise UnreadableEntryError(seq, values.get("id"), column, value, error["msg"]) from None


def install_psycopg_loaders(driver_connection: Any) -> None:
    """Make a psycopg connection read timestamps Python cannot hold (``infinity``, ``-infinity``, years past 9999
    or before 1) as ``UnreadableValue`` instead of failing the whole result."""
    import psycopg
    from psycopg.adapt import Loader
    from psycopg.pq import Format

    adapters = driver_connection.adapters
    for type_name in ("timestamptz", "timestamp"):
        info = adapters.types.get(type_name)
        if info is None:  # pragma: no cover - built into every PostgreSQL
            continue
        inner_class = adapters.get_loader(info.oid, Format.TEXT)
        if inner_class is None or getattr(inner_class, "_tolerant", False):
            continue

        class TolerantLoader(Loader):
            _tolerant = True
            format = Format.TEXT
            _inner_class = inner_class

            def __init__(self, oid: int, context: Any = None) -> None:
                super().__init__(oid, context)
                self._inner = self._inner_class(oid, context)

            def load(self, data: Any) -> Any:
                try:
                    return self._inner.load(data)
                except (psycopg.DataError, ValueError, OverflowError):
                    return UnreadableValue(bytes(data).decode("utf-8", "replace"))

        adapters.register_loader(info.oid, TolerantLoader)


def as_datetime(value: object) -> datetime | None:
    """A stored timestamp, or None if it is NULL or unreadable."""
    return value if isinstance(value, datetime) else None
