"""``cqrs-scheduling audit``: cancel, requeue (one or all failed) and purge run from the CLI each leave one record
naming ``user@host``; refusals, dry runs and an unconfirmed requeue of every dead letter leave none; ``--entry``
narrows the trail to one entry."""

from __future__ import annotations

import getpass
import json
import socket

from cli_support import cli


def test_cli_actions_leave_records_read_back_by_audit(populated: tuple[str, dict[str, str]]) -> None:
    url, ids = populated
    assert json.loads(cli("audit", "--json", store=url).stdout)["records"] == []
    assert cli("cancel", ids["later"], store=url).returncode == 0
    assert cli("cancel", ids["later"], store=url).returncode == 1  # refused: no record
    assert cli("requeue", ids["dead"], store=url).returncode == 0
    refused = cli("requeue", "--all-failed", "--type", "Fail", store=url)  # no terminal to confirm on, no --yes
    assert refused.returncode == 2
    assert refused.stderr == (
        "error: requeue --all-failed would requeue 1 FAILED entry of scheduling_app.Fail: confirm with --yes\n"
    )
    assert cli("requeue", "--all-failed", "--type", "Fail", "--yes", store=url).returncode == 0
    assert cli("purge", "--older-than", "1d", "--dry-run", store=url).returncode == 0  # counts only: no record
    assert cli("purge", "--older-than", "1d", "--status", "COMPLETED", store=url).returncode == 0

    result = cli("audit", "--json", store=url)
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)["records"]
    assert [(r["action"], r["entry_ids"], r["target"], r["count"]) for r in records] == [
        ("purge", [], "older_than=1d statuses=COMPLETED", 1),
        ("requeue_failed", [], "status=FAILED type=scheduling_app.Fail", 1),
        ("requeue", [ids["dead"]], None, 1),
        ("cancel", [ids["later"]], None, 1),
    ]
    me = f"{getpass.getuser()}@{socket.gethostname()}"
    assert {(r["source"], r["actor"], r["client"]) for r in records} == {("cli", me, None)}

    one = json.loads(cli("audit", "--entry", ids["dead"][:8], "--json", store=url).stdout)
    assert (one["entry_id"], [r["action"] for r in one["records"]]) == (ids["dead"], ["requeue"])
    table = cli("audit", "--limit", "1", store=url)
    assert table.returncode == 0 and "purge" in table.stdout and "cancel" not in table.stdout
