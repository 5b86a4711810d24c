"""The main job, as a user runs it: ``cqrs-scheduling demo`` on a SQLite file, twice."""

from __future__ import annotations

import subprocess
import sys
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
