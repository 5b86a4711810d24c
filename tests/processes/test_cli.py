"""The command line as a user drives it: real processes against a real SQLite file (and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_support import ROOT, SUPPORT, assert_one_line_error, cli

from stores import SqlStore


def test_status_json_counts_and_dead_letters(populated: tuple[str, dict[str, str]]) -> None:
    """status --json: counts per status, next due, dead letters per command type."""
    url, _ = populated
    result = cli("status", "--json", store=url)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["counts"] == {
        "PENDING": 1,
        "PROCESSING": 0,
        "COMPLETED": 1,
        "FAILED": 2,
        "CANCELLED": 1,
        "EXPIRED": 0,
        "WAITING": 0,
    }
    assert report["total"] == 5
    assert report["dead_letters_by_type"] == {"scheduling_app.Fail": 2}
    assert report["next_due_at"] is not None
    assert report["oldest_overdue_at"] is None  # the only PENDING entry is due in the future
    human = cli("status", store=url)
    assert human.returncode == 0
    assert "scheduling_app.Fail" in human.stdout
    assert "COMPLETED" in human.stdout


def test_list_filters_and_pages(populated: tuple[str, dict[str, str]]) -> None:
    """list --status/--type/--correlation-id filter; --limit/--offset page; --json is the documented shape."""
    url, ids = populated
    failed = json.loads(cli("list", "--status", "FAILED", "--json", store=url).stdout)
    assert {e["id"] for e in failed["entries"]} == {ids["dead"], ids["dead2"]}
    assert failed["next_offset"] is None
    by_flow = json.loads(cli("list", "--correlation-id", "flow-1", "--json", store=url).stdout)
    assert [e["id"] for e in by_flow["entries"]] == [ids["done"]]
    by_type = json.loads(cli("list", "--type", "scheduling_app.Record", "--json", store=url).stdout)
    assert len(by_type["entries"]) == 3
    first = json.loads(cli("list", "--limit", "2", "--json", store=url).stdout)
    second = json.loads(cli("list", "--limit", "2", "--offset", str(first["next_offset"]), "--json", store=url).stdout)
    third = json.loads(cli("list", "--limit", "2", "--offset", "4", "--json", store=url).stdout)
    seen = [e["id"] for page in (first, second, third) for e in page["entries"]]
    assert sorted(seen) == sorted(ids.values())
    assert third["next_offset"] is None
    table = cli("list", store=url)
    assert table.returncode == 0
    assert ids["dead"] in table.stdout


def test_show_prints_fields_payload_and_attempts(populated: tuple[str, dict[str, str]]) -> None:
    """show ID: every field, the payload pretty-printed, and each attempt with its error."""
    url, ids = populated
    result = cli("show", ids["dead"], store=url)
    assert result.returncode == 0, result.stderr
    assert '"key": "x"' in result.stdout
    assert "attempt 1: failed" in result.stdout
    assert "ValueError: failure 1 of x" in result.stdout
    detail = json.loads(cli("show", ids["dead"], "--json", store=url).stdout)
    assert detail["entry"]["status"] == "FAILED"
    assert [a["outcome"] for a in detail["attempts"]] == ["failed"]


def test_cancel_and_requeue_exit_codes(populated: tuple[str, dict[str, str]]) -> None:
    """cancel/requeue succeed with 0 and refuse with 1 and a reason on stderr."""
    url, ids = populated
    assert cli("cancel", ids["later"], store=url).returncode == 0
    assert_one_line_error(
        cli("cancel", ids["later"], store=url), 1, "it is CANCELLED, not PENDING or WAITING or FAILED"
    )
    assert_one_line_error(cli("cancel", "no-such-id", store=url), 1, "no such entry")
    assert cli("requeue", ids["dead"], store=url).returncode == 0
    assert_one_line_error(cli("requeue", ids["dead"], store=url), 1, "it is PENDING, not FAILED")
    result = cli("requeue", "--all-failed", "--yes", "--type", "scheduling_app.Fail", "--json", store=url)
    assert json.loads(result.stdout) == {"requeued": [ids["dead2"]]}
    assert cli("requeue", "--all-failed", store=url).returncode == 1  # nothing left to requeue (nothing to confirm)
    assert_one_line_error(cli("requeue", store=url), 2, "give an ID or --all-failed")


def test_cancel_dismisses_a_dead_letter(populated: tuple[str, dict[str, str]]) -> None:
    """cancel ID of a FAILED entry dismisses it (exit 0): CANCELLED, its error and attempt kept, out of the dead
    letters, no longer requeueable; an entry neither PENDING nor FAILED is refused with exit code 1."""
    url, ids = populated
    dismissed = cli("cancel", ids["dead"], "--json", store=url)
    assert dismissed.returncode == 0, dismissed.stderr
    assert json.loads(dismissed.stdout) == {"id": ids["dead"], "cancelled": True, "running": False}
    detail = json.loads(cli("show", ids["dead"], "--json", store=url).stdout)
    assert detail["entry"]["status"] == "CANCELLED"
    assert "failure 1 of x" in detail["entry"]["error_message"]
    assert [a["outcome"] for a in detail["attempts"]] == ["failed"]
    report = json.loads(cli("status", "--json", store=url).stdout)
    assert report["dead_letters_by_type"] == {"scheduling_app.Fail": 1}
    assert_one_line_error(cli("requeue", ids["dead"], store=url), 1, "it is CANCELLED, not FAILED")
    human = cli("cancel", ids["dead2"], store=url)
    assert (human.returncode, human.stdout.strip()) == (0, f"cancelled {ids['dead2']}")
    assert_one_line_error(
        cli("cancel", ids["done"], store=url),
        1,
        f"cannot cancel {ids['done']}: it is COMPLETED, not PENDING or WAITING or FAILED",
    )


def test_purge_dry_run_then_purge(populated: tuple[str, dict[str, str]]) -> None:
    """purge --dry-run counts; purge deletes only finished entries older than the cutoff."""
    url, _ = populated
    dry = json.loads(cli("purge", "--older-than", "1d", "--dry-run", "--json", store=url).stdout)
    assert (dry["count"], dry["dry_run"]) == (4, True)
    only_failed = json.loads(cli("purge", "--older-than", "1d", "--status", "FAILED", "--json", store=url).stdout)
    assert only_failed["count"] == 2
    rest = cli("purge", "--older-than", "P1D", store=url)
    assert rest.returncode == 0
    assert "deleted 2 entries" in rest.stdout
    assert cli("purge", "--older-than", "1d", store=url).returncode == 0  # nothing left is not an error
    report = json.loads(cli("status", "--json", store=url).stdout)
    assert report["counts"]["PENDING"] == 1  # never purged


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["status", "--store", "mysql://root@localhost/db"], 1, "unsupported store URL scheme 'mysql'"),
        (["status", "--store", "postgresql://app:s3cret@127.0.0.1:1/db"], 1, "app:***@127.0.0.1:1/db is unavailable"),
        (["purge", "--older-than", "soon"], 2, "not a duration: 'soon'"),
        (["worker", "--app", "no_such_module:build"], 2, "cannot import 'no_such_module'"),
        (["worker", "--app", "worker_app:not_an_injector"], 2, "returned str, not an injector.Injector"),
        (["worker", "--app", "worker_app:Job"], 2, "calling worker_app:Job failed: ValidationError"),
        (["worker", "--app", "worker_app"], 2, "--app must look like 'package.module:factory'"),
        (["worker", "--app", "worker_app:missing"], 2, "has no attribute 'missing'"),
    ],
)
def test_bad_input_is_one_clear_line(args: list[str], code: int, fragment: str, tmp_path: Path) -> None:
    """Bad URLs, unreachable databases, bad --app and malformed durations: one line on stderr, no traceback."""
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert fragment in result.stderr, result.stderr
    assert "s3cret" not in result.stderr


def test_store_defaults_to_the_environment_then_sqlite(tmp_path: Path) -> None:
    """Without --store, $CQRS_SCHEDULING_STORE is used, then sqlite:///scheduled-commands.db in the directory; an
    operator command never creates a store that is not there (a mistyped path is an error, not an empty store)."""
    missing = cli("status", "--json", cwd=tmp_path)
    assert_one_line_error(missing, 1, "no store at scheduled-commands.db")
    assert not (tmp_path / "scheduled-commands.db").exists()
    assert cli("demo", cwd=tmp_path).returncode == 0  # creates the default store
    result = cli("status", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "scheduled-commands.db" in json.loads(result.stdout)["store"]
    other = tmp_path / "other.db"
    assert cli("demo", "--store", f"sqlite:///{other}", cwd=tmp_path).returncode == 0
    from_env = cli("status", "--json", cwd=tmp_path, env={"CQRS_SCHEDULING_STORE": f"sqlite:///{other}"})
    assert "other.db" in json.loads(from_env.stdout)["store"]


@pytest.mark.parametrize(
    "command", ["demo", "worker", "workers", "status", "list", "show", "cancel", "requeue", "purge"]
)
def test_every_command_has_help(command: str) -> None:
    """Every command's --help exits 0 and explains itself."""
    result = cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout
    assert len(result.stdout.splitlines()) > 5


def test_worker_without_store_uses_the_sqlite_default_over_a_memory_store(tmp_path: Path) -> None:
    """A factory on MemoryStore and no --store: the worker runs on sqlite:///scheduled-commands.db (logged)."""
    import signal
    import time

    log = tmp_path / "worker.log"
    with log.open("w", encoding="utf-8") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "scheduling", "worker", "--app", "worker_app:build_injector"],
            cwd=tmp_path,
            env=os.environ | {"PYTHONPATH": os.pathsep.join([str(SUPPORT), str(ROOT)]), "WORKER_APP_OUT": "out"},
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            text=True,
        )
    # Stopped only once it says it started: a SIGTERM while the store still opens (slow on a loaded machine) rightly
    # stops it before the service starts, and the start line would never be written.
    try:
        deadline = time.monotonic() + 60
        while "started on" not in log.read_text(encoding="utf-8") and process.poll() is None:
            assert time.monotonic() < deadline, log.read_text(encoding="utf-8")
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = log.read_text(encoding="utf-8")
    assert process.returncode == 0, stderr
    started = next(line for line in stderr.splitlines() if "started on" in line)
    assert "sqlite+aiosqlite:///scheduled-commands.db" in started


def test_cancel_running_asks_the_worker_of_a_processing_entry(populated: tuple[str, dict[str, str]]) -> None:
    """cancel ID --running on a PROCESSING entry stores the request for its worker (exit 0); plain cancel refuses
    it (exit 1), and --running on a finished entry names every status it acts on."""
    url, ids = populated

    async def claim_later() -> None:
        async with SqlStore(url) as store:
            now = datetime.now(UTC) + timedelta(days=365)
            claimed = await store.claim_due(now=now, limit=10, worker_id="w", lease_duration=timedelta(minutes=5))
            assert ids["later"] in {entry.id for entry in claimed}

    asyncio.run(claim_later())
    assert_one_line_error(
        cli("cancel", ids["later"], store=url), 1, "it is PROCESSING, not PENDING or WAITING or FAILED"
    )
    result = cli("cancel", ids["later"], "--running", "--json", store=url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"id": ids["later"], "cancelled": True, "running": True}
    detail = json.loads(cli("show", ids["later"], "--json", store=url).stdout)
    assert detail["entry"]["status"] == "PROCESSING" and detail["entry"]["cancel_requested_at"] is not None
    assert_one_line_error(
        cli("cancel", ids["done"], "--running", store=url),
        1,
        "it is COMPLETED, not PENDING or WAITING or FAILED or PROCESSING",
    )
