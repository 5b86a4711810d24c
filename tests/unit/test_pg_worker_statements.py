"""The worker's statements on PostgreSQL are written with SQLAlchemy's ``:name`` parameters and sent through psycopg:
their placeholders numbered once (PostgreSQL's own), and the rows they come back as."""

from __future__ import annotations

import re

from stores.queues import Route
from stores.sql._pg_claim import claim_statement
from stores.sql._pg_worker import NativeStatement, Record


def test_named_parameters_become_numbered_ones_and_nothing_else_changes() -> None:
    """Each name gets one number (a name used twice reuses it); casts, time literals and ``%`` stay as written."""
    statement = NativeStatement.of(
        "SELECT :now, CAST(:ids AS text[]), x::text, '00:00:00+00', 100 % 7 FROM t WHERE a = :a_1 AND b > :now"
    )
    assert statement.text == (
        b"SELECT $1, CAST($2 AS text[]), x::text, '00:00:00+00', 100 % 7 FROM t WHERE a = $3 AND b > $1"
    )
    assert statement.names == ("now", "ids", "a_1")
    assert statement.values({"a_1": 3, "ids": ["x"], "now": 1, "unused": 0}) == [1, ["x"], 3]


def test_every_claim_statement_keeps_only_its_known_parameters() -> None:
    known = {"now", "limit", "window", "worker_id", "lease_expires_at", "queues", "types", "limited"}
    for route in (Route(), Route.of(["a"], ["t"]), Route.of(["a", "b"], None)):
        for limited in (False, True):
            statement = NativeStatement.of(claim_statement(route, limited=limited))
            assert b":" not in statement.text.replace(b"::", b""), statement.text
            assert set(statement.names) <= known, set(statement.names) - known
            numbers = {int(n) for n in re.findall(rb"\$(\d+)", statement.text)}
            assert numbers == set(range(1, len(statement.names) + 1))


def test_a_record_reads_as_a_row_does() -> None:
    row = Record(id="a", seq=1)
    assert (row.id, row.seq, row._asdict()) == ("a", 1, {"id": "a", "seq": 1})
    assert getattr(row, "has_dependants", False) is False
