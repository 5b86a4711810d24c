"""What the command-line tests share: running ``cqrs-scheduling`` as a process, checking its one-line errors, and a
store filled with one entry in each interesting state."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from injector import Binder, Injector
from scheduling_app import HANDLERS, Fail, Log, Record

from mediator import MediatorModule
from scheduling import CommandScheduler, ManualClock, ScheduledCommandService, ScheduleOptions, SchedulingModule
from stores import SqlStore

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "tests" / "support"


def cli(
    *args: str, store: str | None = None, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "scheduling", *args]
    if store is not None:
        command += ["--store", store]
    environment = os.environ | {"PYTHONPATH": os.pathsep.join([str(SUPPORT), str(ROOT)])} | (env or {})
    environment.pop("CQRS_SCHEDULING_STORE", None) if env is None or "CQRS_SCHEDULING_STORE" not in env else None
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd or ROOT, env=environment, timeout=60)


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


async def populate(store_url: str) -> dict[str, str]:
    """One entry in each interesting state: done, dead-lettered (two types), pending, cancelled."""
    async with SqlStore(store_url) as store:
        clock = ManualClock(datetime.now(UTC) - timedelta(days=10))
        injector = Injector([MediatorModule(handlers=HANDLERS), SchedulingModule(store=store, clock=clock)])
        injector.binder.install(lambda binder: Binder.bind(binder, Log, to=Log()))
        scheduler = injector.get(CommandScheduler)
        ids = {
            "done": await scheduler.schedule(Record(value="done"), ScheduleOptions(correlation_id="flow-1")),
            "dead": await scheduler.schedule(Fail(key="x"), ScheduleOptions(max_retries=0)),
            "dead2": await scheduler.schedule(Fail(key="y"), ScheduleOptions(max_retries=0)),
            "later": await scheduler.schedule(Record(value="later"), ScheduleOptions(delay=timedelta(days=30))),
            "cancelled": await scheduler.schedule(Record(value="no"), ScheduleOptions(delay=timedelta(days=30))),
        }
        await scheduler.cancel(ids["cancelled"])
        await injector.get(ScheduledCommandService).run_until_idle()
        return ids
