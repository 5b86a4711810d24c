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


def test_queue_limit_sets_lists_and_clears_the_limits(populated: tuple[str, dict[str, str]]) -> None:
    url, _ = populated
    limited = cli("queue", "limit", "api", "--max-running", "5", "--rate", "100/1m", store=url)
    assert (limited.returncode, limited.stdout.strip()) == (0, "limited queue api: max running 5, rate 100/1m")
    queues = {queue["name"]: queue for queue in json.loads(cli("queue", "list", "--json", store=url).stdout)["queues"]}
    assert queues["api"] == {
        "name": "api",
        "paused": False,
        "depth": 0,
        "running": 0,
        "max_running": 5,
        "rate": {"count": 100, "per": "PT1M"},
    }
    assert "100 per 0:01:00" in cli("queue", "list", store=url).stdout
    cleared = cli("queue", "limit", "api", store=url)
    assert (cleared.returncode, cleared.stdout.strip()) == (0, "cleared the limits of queue api")
    listed = cli("queue", "list", "--json", store=url)
    assert [queue["name"] for queue in json.loads(listed.stdout)["queues"]] == ["default"]


def test_queue_limit_refuses_bad_values_naming_them(populated: tuple[str, dict[str, str]]) -> None:
    url, _ = populated
    for options, named in (
        (["--max-running", "0"], "0: Input should be greater than or equal to 1"),
        (["--rate", "5/x"], "'5/x'"),
        (["--rate", "0/s"], "'0/s'"),
    ):
        result = cli("queue", "limit", "api", *options, store=url)
        assert result.returncode == 2 and named in result.stderr, (options, result.stderr)
    assert_one_line_error(cli("queue", "limit", "bad name", "--max-running", "1", store=url), 1, "'bad name'")
