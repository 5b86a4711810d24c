"""A newcomer's first hour, with real processes: a producer and a CLI worker built from one factory meet in the
store named by ``$CQRS_SCHEDULING_STORE``; the worker declares the recurring schedules its factory names."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "tests" / "support"


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """``$CQRS_SCHEDULING_STORE`` on a SQLite file of this test, for this process and its children."""
    env = {
        "CQRS_SCHEDULING_STORE": f"sqlite:///{tmp_path / 'app.db'}",
        "FIRST_HOUR_OUT": str(tmp_path / "executed.txt"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.syspath_prepend(str(SUPPORT))
    return os.environ | env | {"PYTHONPATH": os.pathsep.join([str(SUPPORT), str(ROOT)])}


def start_worker(app: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "scheduling", "worker", "--app", app, "--polling-interval", "0.1"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop(worker: subprocess.Popen[str]) -> str:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    try:
        output, _ = worker.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        output, _ = worker.communicate()
    return output


def wait_for_lines(path: Path, predicate: object, worker: subprocess.Popen[str], timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and worker.poll() is None:
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        if callable(predicate) and predicate(lines):
            return lines
        time.sleep(0.05)
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


@pytest.mark.timeout(90)
async def test_a_producer_and_a_cli_worker_from_one_factory_share_the_default_store(
    app_env: dict[str, str], tmp_path: Path
) -> None:
    """The producer's SchedulingModule() stores in $CQRS_SCHEDULING_STORE, where the CLI worker runs the command."""
    from first_hour_app import Greet, build

    from scheduling import CommandScheduler
    from stores import ScheduledCommandStore

    injector = build()
    store = injector.get(ScheduledCommandStore)  # type: ignore[type-abstract]
    async with store:
        assert store.durable, "no store named: the durable default, never a MemoryStore"
        command_id = await injector.get(CommandScheduler).schedule(Greet(name="ada"))
    worker = start_worker("first_hour_app:build", app_env, tmp_path)
    try:
        lines = wait_for_lines(tmp_path / "executed.txt", lambda lines: "ada" in lines, worker)
    finally:
        output = stop(worker)
    assert lines == ["ada"], output
    async with store:
        entry = await injector.get(CommandScheduler).get_status(command_id)
    assert entry is not None and entry.status == "COMPLETED", output


@pytest.mark.timeout(90)
def test_a_cli_worker_declares_the_recurring_schedules_of_its_factory(app_env: dict[str, str], tmp_path: Path) -> None:
    """SchedulingModule(on_start=[...]) runs when the CLI worker starts: its schedule is stored and runs."""
    worker = start_worker("first_hour_app:build_with_schedules", app_env, tmp_path)
    try:
        lines = wait_for_lines(tmp_path / "executed.txt", lambda lines: len(lines) >= 2, worker)
    finally:
        output = stop(worker)
    assert lines[:2] == ["tick", "tick"], output
    listed = subprocess.run(
        [sys.executable, "-m", "scheduling", "recurring", "list", "--json"],
        env=app_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    schedules = json.loads(listed.stdout)
    names = [s["name"] for s in (schedules["schedules"] if isinstance(schedules, dict) else schedules)]
    assert names == ["every-second-greeting"], listed.stdout


LEAK_CHECK = """
import asyncio

from first_hour_app import Greet, build

from scheduling import CommandScheduler, ScheduledCommandService

injector = build()


async def produce() -> None:
    await injector.get(CommandScheduler).schedule(Greet(name="grace"))  # the store opens itself, nobody closes it


async def work() -> None:
    assert await injector.get(ScheduledCommandService).run_until_idle() == 2


asyncio.run(produce())
asyncio.run(produce())  # a second event loop: the store closed with the first one and opens again
asyncio.run(work())
print("done")
"""


@pytest.mark.timeout(90)
def test_a_store_that_opened_itself_leaks_nothing(app_env: dict[str, str], tmp_path: Path) -> None:
    """A script that never opens or closes its store, across three event loops, leaves no ResourceWarning."""
    result = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", "-c", LEAK_CHECK],
        env=app_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.strip() == "done", result.stderr
    assert "ResourceWarning" not in result.stderr, result.stderr
    assert (tmp_path / "executed.txt").read_text(encoding="utf-8").splitlines() == ["grace", "grace"]
