"""Counting the round trips a PostgreSQL store makes, from the wire: libpq's protocol trace of every connection the
store's pool hands out and of its worker's own connections (the claim and outcome statements), one file per
connection; a round trip is a ``ReadyForQuery`` message from the server (it ends
every reply to a simple query, and every extended-protocol exchange up to its ``Sync``). BEGIN and COMMIT count like
any statement; the LISTEN connection and the direct producer's are not counted.

Used by tests and by ``bench/workflows.py``. libpq buffers the trace in C: ``count()`` flushes every C stream first.
"""

from __future__ import annotations

import ctypes
import os
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import event

from stores.sql import SqlStore

__all__ = ["RoundTrips"]

_LIBC = ctypes.CDLL(None)


class RoundTrips:
    """``with RoundTrips(store) as trips: ...; trips.count()``: the round trips of the store's pooled connections
    and its worker's since the block began (a connection is traced from its first checkout in the block on)."""

    def __init__(self, store: SqlStore) -> None:
        self._engine = store.engine.sync_engine
        self._worker = getattr(store._backend, "worker", None)  # the worker's connections too
        self._directory = tempfile.TemporaryDirectory(prefix="pg_round_trips_")
        self._traced: dict[int, tuple[Any, int, Path]] = {}
        self._baseline = 0

    def __enter__(self) -> RoundTrips:
        event.listen(self._engine, "checkout", self._checkout)
        if self._worker is not None:
            self._worker.checkout_hooks.append(self._trace)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self._engine, "checkout", self._checkout)
        if self._worker is not None:
            self._worker.checkout_hooks.remove(self._trace)
        _LIBC.fflush(None)  # nothing buffered is left to reach a descriptor number once it is reused
        for pgconn, descriptor, _path in self._traced.values():
            if pgconn.status == 0:  # CONNECTION_OK: still open
                pgconn.untrace()
            os.close(descriptor)
        self._traced.clear()
        self._directory.cleanup()

    def _checkout(self, dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        self._trace(dbapi_connection.driver_connection)

    def _trace(self, connection: Any) -> None:
        from psycopg import pq

        pgconn = connection.pgconn
        if id(pgconn) in self._traced:
            return
        path = Path(self._directory.name) / f"{len(self._traced)}.trace"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        pgconn.trace(descriptor)
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        self._traced[id(pgconn)] = (pgconn, descriptor, path)

    def total(self) -> int:
        """Every round trip traced so far."""
        _LIBC.fflush(None)
        return sum(
            sum(1 for line in path.read_text().splitlines() if line.startswith("B") and "\tReadyForQuery" in line)
            for _pgconn, _descriptor, path in self._traced.values()
        )

    def reset(self) -> None:
        """Count from here on."""
        self._baseline = self.total()

    def count(self) -> int:
        """The round trips since the block began or the last ``reset()``."""
        return self.total() - self._baseline
