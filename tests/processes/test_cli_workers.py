"""``cqrs-scheduling workers``, and stuck entries in ``status`` and ``show``, as a user drives them: real processes
against a real SQLite file, with a registry holding a live worker and a gone one that still holds an entry."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cli_support import cli
from scheduling_app import Record

from scheduling.codec import command_type_name
from scheduling.entries import ScheduledCommandEntry, ScheduledCommandStatus
from stores import SqlStore
from stores.workers import StoredWorker

LEASE = timedelta(seconds=60)


async def fleet_with_a_stuck_entry(url: str) -> str:
    """A worker seen just now; one last seen 5 minutes ago, still holding an entry under an expired lease."""
    now = datetime.now(UTC)
    async with SqlStore(url) as store:
        for worker_id, seen, pid in (("alive-1", now, 101), ("dead-2", now - timedelta(minutes=5), 202)):
            await store.register_worker(
                StoredWorker(
                    worker_id=worker_id,
                    host="host-a",
                    pid=pid,
                    queues=("emails",) if pid == 101 else (),
                    command_types=(command_type_name(Record),),
                    started_at=now - timedelta(hours=1),
                    last_seen_at=seen,
                    lease_duration=LEASE,
                )
            )
        entry = ScheduledCommandEntry(
            id="stuck-entry-1",
            command_type=command_type_name(Record),
            payload='{"value": "x"}',
            status=ScheduledCommandStatus.PENDING,
            scheduled_for=now - timedelta(minutes=7),
            created_at=now - timedelta(minutes=7),
        )
        await store.add([entry])
        await store.claim_due(now=now - timedelta(minutes=6), limit=1, worker_id="dead-2", lease_duration=LEASE)
        return entry.id


def test_workers_lists_the_live_and_the_gone_with_what_they_hold(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    asyncio.run(fleet_with_a_stuck_entry(url))

    result = cli("workers", "--json", store=url)
    assert result.returncode == 0, result.stderr
    fleet = json.loads(result.stdout)
    shown = {w["worker_id"]: (w["pid"], w["state"], w["running"], w["queues"]) for w in fleet["workers"]}
    assert shown == {"alive-1": (101, "running", 0, ["emails"]), "dead-2": (202, "gone", 1, [])}
    assert (fleet["by_state"], fleet["stuck"]) == ({"running": 1, "stopping": 0, "gone": 1}, 1)

    table = cli("workers", store=url)
    assert table.returncode == 0, table.stderr
    assert "alive-1" in table.stdout and "dead-2" in table.stdout and "gone" in table.stdout
    assert "1 stuck" in table.stdout


def test_status_and_show_say_which_entries_are_stuck(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    entry_id = asyncio.run(fleet_with_a_stuck_entry(url))

    report = json.loads(cli("status", "--json", store=url).stdout)
    assert (report["stuck"], report["workers"]) == (1, {"running": 1, "stopping": 0, "gone": 1})
    text = cli("status", store=url).stdout
    assert "Stuck:" in text and "1 running, 0 stopping, 1 gone" in text

    detail = json.loads(cli("show", entry_id, "--json", store=url).stdout)
    assert detail["stuck"] is True and detail["entry"]["lease_owner"] == "dead-2"
    shown = cli("show", entry_id, store=url).stdout
    assert "STUCK" in shown and "dead-2" in shown
