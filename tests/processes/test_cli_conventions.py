"""The command line behaves like the tools people know (git, kubectl, celery): ids by unique prefix, short type
names, statuses in any case, ``--version`` and ``-h``, flags shown as flags, and every error in one line.

Real ``cqrs-scheduling`` processes on real SQLite files and PostgreSQL databases.
"""

from __future__ import annotations

import asyncio
import json
from importlib.metadata import version
from pathlib import Path

import pytest
from cli_support import SUPPORT, assert_one_line_error, cli

from stores import SqlStore


async def add_copies(store_url: str, of: str, **changes: str) -> None:
    """Add a copy of entry ``of`` for each ``new id=command type`` in ``changes`` (ids with '-' given as '_')."""
    async with SqlStore(store_url) as store:
        original = await store.get(of)
        assert original is not None
        await store.add(
            [
                original.model_copy(update={"id": entry_id.replace("_", "-"), "command_type": command_type})
                for entry_id, command_type in changes.items()
            ]
        )


def test_ids_are_accepted_by_unique_prefix(populated: tuple[str, dict[str, str]]) -> None:
    """show, cancel and requeue take the first characters of an id, as the demo and list print them; a prefix of
    several ids is a one-line error that lists them."""
    url, ids = populated
    shown = cli("show", ids["dead"][:8], "--json", store=url)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["entry"]["id"] == ids["dead"]
    cancelled = cli("cancel", ids["later"][:6], store=url)
    assert (cancelled.returncode, cancelled.stdout.strip()) == (0, f"cancelled {ids['later']}"), cancelled.stderr
    requeued = cli("requeue", ids["dead2"][:8], "--json", store=url)
    assert json.loads(requeued.stdout) == {"requeued": [ids["dead2"]]}, requeued.stderr

    asyncio.run(add_copies(url, ids["done"], feedbeef_0001="scheduling_app.Record", feedbeef_0002="x.Record"))
    ambiguous = cli("show", "feedbeef", store=url)
    assert_one_line_error(ambiguous, 1, "id prefix 'feedbeef' is ambiguous", "feedbeef-0001", "feedbeef-0002")
    assert cli("show", "feedbeef-0002", store=url).returncode == 0  # a whole id is never ambiguous
    assert_one_line_error(cli("show", "0000000", store=url), 1, "no entry with id '0000000'")


def test_type_accepts_the_class_name_alone_when_unambiguous(populated: tuple[str, dict[str, str]]) -> None:
    url, ids = populated
    by_short = json.loads(cli("list", "--type", "Record", "--json", store=url).stdout)
    by_full = json.loads(cli("list", "--type", "scheduling_app.Record", "--json", store=url).stdout)
    assert len(by_short["entries"]) == 3
    assert by_short == by_full
    requeued = cli("requeue", "--all-failed", "--type", "Fail", "--yes", "--json", store=url)
    assert sorted(json.loads(requeued.stdout)["requeued"]) == sorted([ids["dead"], ids["dead2"]]), requeued.stderr

    asyncio.run(add_copies(url, ids["done"], other_0001="billing.Record"))
    assert_one_line_error(
        cli("list", "--type", "Record", store=url),
        1,
        "command type 'Record' is ambiguous",
        "billing.Record",
        "scheduling_app.Record",
    )
    assert len(json.loads(cli("list", "--type", "billing.Record", "--json", store=url).stdout)["entries"]) == 1


def test_statuses_are_case_insensitive(populated: tuple[str, dict[str, str]]) -> None:
    url, ids = populated
    for spelling in ("failed", "Failed", "FAILED"):
        listed = cli("list", "--status", spelling, "--json", store=url)
        assert listed.returncode == 0, listed.stderr
        assert {e["id"] for e in json.loads(listed.stdout)["entries"]} == {ids["dead"], ids["dead2"]}
    dry = cli("purge", "--older-than", "1d", "--status", "failed", "--dry-run", "--json", store=url)
    assert json.loads(dry.stdout)["count"] == 2, dry.stderr


def test_purge_that_deletes_nothing_exits_0(populated: tuple[str, dict[str, str]]) -> None:
    url, _ = populated
    assert cli("purge", "--older-than", "1d", store=url).returncode == 0
    again = cli("purge", "--older-than", "1d", store=url)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("deleted 0 entries")


def test_requeue_of_an_entry_that_is_not_failed_is_one_line(populated: tuple[str, dict[str, str]]) -> None:
    url, ids = populated
    refused = cli("requeue", ids["done"][:8], store=url)
    assert_one_line_error(refused, 1, f"cannot requeue {ids['done']}: it is COMPLETED, not FAILED")
    assert refused.stdout == ""


def test_version_and_short_help() -> None:
    shown = cli("--version")
    assert (shown.returncode, shown.stdout.strip()) == (0, f"cqrs-scheduling {version('cqrs-scheduling')}")
    for args in (["-h"], ["list", "-h"], ["recurring", "-h"]):
        result = cli(*args)
        assert result.returncode == 0, (args, result.stderr)
        assert result.stdout.startswith("Usage: "), (args, result.stdout)


@pytest.mark.parametrize("command", ["status", "list", "show", "cancel", "requeue", "purge"])
def test_help_shows_json_as_a_flag(command: str) -> None:
    """--json takes no value: the help says so (no '<bool>' after it, no '--no-json')."""
    help_text = cli(command, "--help").stdout
    lines = [line for line in help_text.splitlines() if line.strip().startswith("--json")]
    assert len(lines) == 1, help_text
    assert lines[0].split()[:2] == ["--json", "Print"], lines[0]
    assert "<bool>" not in help_text
    assert "--no-json" not in help_text


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (
            ["status", "--store", "newbie_db"],
            ["not a store URL: 'newbie_db'", "sqlite:///path"],
        ),
        (["status", "--store", "sqlite://file.db"], ["did you mean sqlite:///file.db?"]),
        (["list", "--store", "sqlite://data/jobs.db"], ["did you mean sqlite:///data/jobs.db?"]),
        (
            ["worker", "--app", "broken_apps:without_scheduling"],
            ["broken_apps:without_scheduling returned has no SchedulingModule", "add SchedulingModule()"],
        ),
    ],
)
def test_first_hour_mistakes_are_one_line(args: list[str], fragments: list[str], tmp_path: Path) -> None:
    result = cli(*args, cwd=tmp_path)
    assert_one_line_error(result, 2 if args[0] == "worker" else 1, *fragments)
    assert "Can't instantiate" not in result.stderr


def test_a_factory_that_raises_is_one_line_naming_its_file_and_line(tmp_path: Path) -> None:
    source = (SUPPORT / "broken_apps.py").read_text().splitlines()
    line = next(number for number, text in enumerate(source, 1) if "raise RuntimeError" in text)
    result = cli("worker", "--app", "broken_apps:raising", cwd=tmp_path)
    assert_one_line_error(
        result, 2, "calling broken_apps:raising failed: RuntimeError: DATABASE_URL is not set", f"broken_apps.py:{line}"
    )


def test_a_module_that_fails_to_import_is_one_line_naming_its_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "typo_app.py").write_text("from injector import Injector\n\nbuild = Injectr\n")
    result = cli("worker", "--app", "typo_app:build", cwd=tmp_path)
    assert_one_line_error(
        result, 2, "importing 'typo_app' failed: NameError: name 'Injectr' is not defined", "at typo_app.py:3"
    )
