"""``cqrs-scheduling list`` searching (id prefix, error text, time ranges, the count) and ``bulk``: the count stated
and confirmed (--yes, --expected), refusals in one line, batches in the audit trail. Real processes over a SQLite
file (the search's SQL on PostgreSQL is covered by the store contract suite)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from cli_support import assert_one_line_error, cli, populate

FAIL = "scheduling_app.Fail"


@pytest.fixture
def filled(tmp_path: Path) -> tuple[str, dict[str, str]]:
    url = f"sqlite:///{tmp_path / 'bulk.db'}"
    return url, asyncio.run(populate(url))


def ids_of(result: object) -> list[str]:
    assert isinstance(result, dict)
    return [entry["id"] for entry in result["entries"]]


def test_list_searches_and_counts(filled: tuple[str, dict[str, str]]) -> None:
    url, ids = filled
    by_error = json.loads(cli("list", "--error", "FAILURE 1 OF X", "--json", store=url).stdout)
    assert ids_of(by_error) == [ids["dead"]] and (by_error["total"], by_error["total_exact"]) == (1, True)
    short = cli("list", "--id-prefix", ids["later"][:8], store=url)
    assert short.returncode == 0 and "1 entry of 1 from offset 0" in short.stdout
    assert_one_line_error(
        cli("list", "--created-after", "2026-03-01T12:00:00", store=url), 2, "created_after", "needs a UTC offset"
    )


def test_bulk_states_the_count_and_acts_only_when_confirmed(filled: tuple[str, dict[str, str]]) -> None:
    url, ids = filled
    # No terminal to ask on and no --yes: refused, saying how many it would take; nothing changes.
    assert_one_line_error(
        cli("bulk", "requeue", "--type", FAIL, store=url), 2, "would requeue 2 FAILED entries", "confirm with --yes"
    )
    assert_one_line_error(
        cli("bulk", "requeue", "--type", FAIL, "--expected", "1", store=url), 2, "2 entries match now", "1 confirmed"
    )

    done = json.loads(cli("bulk", "requeue", "--error", "of x", "--yes", "--json", store=url).stdout)
    assert (done["done"], done["remaining"], done["batches"]) == ([ids["dead"]], 0, 1)
    dismissed = cli("bulk", "dismiss", "--id", ids["dead2"], "--id", ids["later"], "--yes", store=url)
    assert dismissed.returncode == 0, dismissed.stderr
    assert "dismissed 1 of 2 given entries in 1 batch(es); 1 left alone (not FAILED)" in dismissed.stdout

    records = json.loads(cli("audit", "--json", store=url).stdout)["records"]
    assert [(r["action"], r["entry_ids"], r["source"]) for r in records[:2]] == [
        ("bulk_dismiss", [ids["dead2"]], "cli"),
        ("bulk_requeue", [ids["dead"]], "cli"),
    ]
    assert records[1]["target"] == 'error~"of x" (batch 1)'
