"""The main job, as a user runs it: ``cqrs-scheduling demo`` on a SQLite file, twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest


def run_demo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scheduling", "demo", *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


@pytest.mark.timeout(120)
def test_demo_shows_every_outcome_and_keeps_history(tmp_path: Path) -> None:
    """The demo ends with completed, failed, expired and cancelled entries; a second run sees the first's."""
    first = run_demo(cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    for word in ("COMPLETED", "FAILED", "EXPIRED", "CANCELLED", "retrying", "dead-lettered after 3 attempts"):
        assert word in first.stdout, word
    assert (tmp_path / "scheduled-commands.db").exists(), "the embedded default is a SQLite file"
    assert "already holds" not in first.stdout
    second = run_demo(cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "already holds 8 entries from earlier runs" in second.stdout
    assert "holds 16 entries in all" in second.stdout


def test_demo_with_a_bad_store_url_is_one_clear_line(tmp_path: Path) -> None:
    """An unsupported --store gives one line on stderr and exit code 1, no traceback."""
    result = run_demo("--store", "mysql://root@localhost/db", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: unsupported store URL scheme 'mysql' in mysql://root@localhost/db; "
        "supported: sqlite:///path/to/file.db, postgresql+psycopg://user@host:5432/db"
    ]


@pytest.mark.timeout(120)
def test_demo_stored_times_tell_the_truth(tmp_path: Path) -> None:
    """After the demo, no entry started after it finished, an entry that never ran has no start, and ``list`` shows
    a dead letter's failed attempts out of those allowed (3/3), never more than allowed."""
    assert run_demo(cwd=tmp_path).returncode == 0
    listed = subprocess.run(
        [sys.executable, "-m", "scheduling", "list", "--json", "--limit", "100"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=True,
    )
    entries = json.loads(listed.stdout)["entries"]
    assert entries
    for entry in entries:
        started, completed = entry["started_at"], entry["completed_at"]
        if started is not None and completed is not None:
            assert datetime.fromisoformat(started) <= datetime.fromisoformat(completed), entry
        if entry["attempt_count"] == 0:
            assert started is None, entry
    assert any(e["status"] == "EXPIRED" and e["started_at"] is None for e in entries)
    table = subprocess.run(
        [sys.executable, "-m", "scheduling", "list", "--status", "FAILED"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    ).stdout
    assert "3/3" in table and "3/2" not in table, table
