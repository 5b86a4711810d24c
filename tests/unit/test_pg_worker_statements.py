"""The worker's statements on PostgreSQL are written with SQLAlchemy's ``:name`` parameters and sent through psycopg:
the conversion of their placeholders, and the rows they come back as."""

from __future__ import annotations

from stores.queues import Route
from stores.sql._pg_claim import claim_statement
from stores.sql._pg_worker import Record, psycopg_placeholders


def test_named_parameters_become_psycopg_placeholders_and_nothing_else_changes() -> None:
    statement = "SELECT :now, CAST(:ids AS text[]), x::text, '00:00:00+00', 100 % 7 FROM t WHERE a = :a_1"
    assert psycopg_placeholders(statement) == (
        "SELECT %(now)s, CAST(%(ids)s AS text[]), x::text, '00:00:00+00', 100 %% 7 FROM t WHERE a = %(a_1)s"
    )


def test_every_claim_statement_keeps_only_its_known_parameters() -> None:
    known = {"now", "limit", "window", "worker_id", "lease_expires_at", "queues", "types", "limited"}
    for route in (Route(), Route.of(["a"], ["t"]), Route.of(["a", "b"], None)):
        for limited in (False, True):
            converted = psycopg_placeholders(claim_statement(route, limited=limited))
            assert ":" not in converted.replace("::", ""), converted
            names = {part.split(")s", 1)[0] for part in converted.split("%(")[1:]}
            assert names <= known, names - known


def test_a_record_reads_as_a_row_does() -> None:
    row = Record(id="a", seq=1)
    assert (row.id, row.seq, row._asdict()) == ("a", 1, {"id": "a", "seq": 1})
    assert getattr(row, "has_dependants", False) is False
