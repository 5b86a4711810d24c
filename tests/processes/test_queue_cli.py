"""``cqrs-scheduling queue list|pause|resume``, ``worker --queue`` and the "waiting for a worker" line of ``status``,
as an operator runs them, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from cli_support import assert_one_line_error, cli

from scheduling.entries import ScheduledCommandEntry, ScheduledCommandStatus
from stores import SqlStore


def test_queue_pause_list_and_resume(populated: tuple[str, dict[str, str]]) -> None:
    url, _ = populated
    paused = cli("queue", "pause", "emails", store=url)
    assert (paused.returncode, paused.stdout.strip()) == (0, "paused queue emails"), paused.stderr
    listed = cli("queue", "list", "--json", store=url)
    assert listed.returncode == 0, listed.stderr
    queues = {queue["name"]: queue for queue in json.loads(listed.stdout)["queues"]}
    assert queues["emails"] == {
        "name": "emails",
        "paused": True,
        "depth": 0,
        "running": 0,
        "max_running": None,
        "rate": None,
    }
    assert queues["default"]["depth"] == 1 and not queues["default"]["paused"]  # the entry due in 30 days
    text = cli("queue", "list", store=url)
    assert "emails" in text.stdout and "paused" in text.stdout and "2 queues" in text.stdout
    resumed = cli("queue", "resume", "emails", store=url)
    assert (resumed.returncode, resumed.stdout.strip()) == (0, "resumed queue emails"), resumed.stderr
    listed = cli("queue", "list", "--json", store=url)
    assert [queue["name"] for queue in json.loads(listed.stdout)["queues"]] == ["default"]


def test_queue_pause_refuses_a_bad_name_in_one_line(populated: tuple[str, dict[str, str]]) -> None:
    url, _ = populated
    assert_one_line_error(cli("queue", "pause", "no spaces", store=url), 1, "'no spaces'")


def test_worker_refuses_a_bad_queue_name_in_one_line(populated: tuple[str, dict[str, str]]) -> None:
    url, _ = populated
    result = cli("worker", "--app", "worker_app:build_injector", "--queue", "ok", "--queue", "bad/name", store=url)
    assert_one_line_error(result, 1, "'bad/name'")


def test_status_names_entries_waiting_for_a_worker_that_handles_their_type(
    populated: tuple[str, dict[str, str]],
) -> None:
    url, _ = populated
    long_ago = datetime.now(UTC) - timedelta(minutes=5)

    async def add_unhandled() -> None:
        async with SqlStore(url) as store:
            await store.add(
                [
                    ScheduledCommandEntry(
                        id=f"waiting-{n}",
                        command_type="otherapp.SendInvoice",
                        payload="{}",
                        status=ScheduledCommandStatus.PENDING,
                        scheduled_for=long_ago,
                        created_at=long_ago,
                    )
                    for n in range(3)
                ]
            )

    asyncio.run(add_unhandled())
    result = cli("status", store=url)
    assert result.returncode == 0, result.stderr
    assert "3 waiting for a worker that handles otherapp.SendInvoice" in result.stdout
    report = json.loads(cli("status", "--json", store=url).stdout)
    assert report["waiting_for_worker_by_type"] == {"otherapp.SendInvoice": 3}
