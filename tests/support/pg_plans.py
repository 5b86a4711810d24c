"""Reading PostgreSQL's indexes and plans in tests: which indexes the entries' table has, and which ones a
statement is read through."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import psycopg
from sqlalchemy.engine import make_url

__all__ = ["index_definitions", "indexes_read", "libpq"]


def libpq(url: str) -> str:
    """A store URL (``postgresql+psycopg://...``) as psycopg's connection string, password included."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def indexes_read(url: str, statement: str, parameters: Mapping[str, Any] | None = None) -> set[str]:
    """The indexes the plan of ``statement`` (with its ``parameters``, in psycopg's ``%(name)s`` style) reads,
    sequential scans off, as on the worker's connections."""
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")
        row = conn.execute(f"EXPLAIN (FORMAT JSON) {statement}", parameters).fetchone()
    assert row is not None
    plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
    names: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        if "Index Name" in node:
            names.add(str(node["Index Name"]))
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return names


def index_definitions(url: str) -> dict[str, str]:
    """Index name -> definition (``pg_get_indexdef``) of the valid indexes of the entries' table."""
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE i.indrelid = 'scheduled_commands'::regclass AND i.indisvalid"
        ).fetchall()
    return {str(name): str(how) for name, how in rows}
