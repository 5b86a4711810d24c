"""The SQL store: ``SqlStore`` over SQLite (the embedded default) or PostgreSQL (a fleet of workers).

``_store.py`` is the store, the same for both databases (the schedules, workers and audit records it keeps beside
the entries in ``_records_store.py``, the dependencies in ``_dependants_store.py``); ``_postgresql.py`` and
``_sqlite.py`` are what differs between them, behind the private ``Backend`` protocol of ``_backend.py``. Rows and
entries convert in ``_rows.py``, a caller's session is joined in ``_sessions.py``, outcomes are group-committed in
``_group_commit.py``, the schema is in ``_tables.py`` and created by ``_schema.py``.
"""

from ._store import SqlStore
from ._tables import ENTRIES
from ._urls import mask_url, to_async_url

__all__ = ["ENTRIES", "SqlStore", "mask_url", "to_async_url"]
