"""``cqrs-scheduling worker --metrics-port``: a real worker process serving /metrics while it runs commands."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from injector import Injector
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from worker_app import Job, JobHandler

from mediator import MediatorModule
from scheduling import CommandScheduler, ManualClock, SchedulerSettings, SchedulingModule
from scheduling.metrics import StoreGauges
from stores import SqlStore

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "tests" / "support"
JOB = "worker_app.Job"


def environment(out: Path) -> dict[str, str]:
    return os.environ | {"PYTHONPATH": os.pathsep.join([str(SUPPORT), str(ROOT)]), "WORKER_APP_OUT": str(out)}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def worker_command(store_url: str) -> list[str]:
    return [sys.executable, "-m", "scheduling", "worker", "--app", "worker_app:build_injector", "--store", store_url]


def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]] | None:
    """The samples by name and labels, or None while the endpoint is not up yet."""
    try:
        response = httpx.get(url, timeout=2)
    except httpx.TransportError:
        return None
    assert response.status_code == 200
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            found.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return found


async def schedule_jobs(store_url: str, count: int) -> None:
    async with SqlStore(store_url) as store:
        scheduler = Injector([MediatorModule([JobHandler]), SchedulingModule(store=store)]).get(CommandScheduler)
        await scheduler.schedule_many([Job(n=n) for n in range(count)])


@pytest.mark.timeout(120)
def test_a_worker_process_serves_metrics_while_it_runs(tmp_path: Path) -> None:
    """Scrape /metrics of a real worker until completed_total reaches N, then SIGTERM: exit code 0."""
    count = 25
    store_url = f"sqlite:///{tmp_path / 'scheduled.db'}"
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    log = tmp_path / "worker.log"
    with log.open("w") as stderr:
        worker = subprocess.Popen(
            [*worker_command(store_url), "--metrics-port", str(port), "--polling-interval", "0.05"],
            env=environment(tmp_path / "out"),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 30
        samples = scrape(url)
        while samples is None and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            samples = scrape(url)
        assert samples is not None, log.read_text()
        assert samples["cqrs_scheduling_entries"][(("status", "pending"),)] == 0  # the gauges are there from the start
        assert len(samples["cqrs_scheduling_entries"]) == 7  # one per status, WAITING included
        assert samples["cqrs_scheduling_oldest_overdue_age_seconds"] == {(): 0}
        assert samples["cqrs_scheduling_entries_running"] == {(): 0}
        assert "process_cpu_seconds_total" in samples  # the default registry: process metrics come along
        while "cqrs_scheduling_commands_completed_total" not in samples and time.monotonic() < deadline:
            time.sleep(0.05)  # the endpoint is up just before the service starts and announces its types
            samples = scrape(url) or {}
        # before any job exists: a zero series per command type the worker can run, for increase() to see the first
        for event in ("scheduled", "completed", "retried", "failed", "expired", "cancelled"):
            assert samples[f"cqrs_scheduling_commands_{event}_total"] == {(("command_type", JOB),): 0}, event
        assert not [name for name in samples if name.endswith("_created") and name.startswith("cqrs_scheduling")]

        asyncio.run(schedule_jobs(store_url, count))  # from another process, as an application would
        completed = 0.0
        deadline = time.monotonic() + 60
        while completed < count and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
            samples = scrape(url) or {}
            completed = samples.get("cqrs_scheduling_commands_completed_total", {}).get((("command_type", JOB),), 0)
        assert completed == count, log.read_text()
        assert samples["cqrs_scheduling_due_lag_seconds_count"][(("command_type", JOB),)] == count
        durations = samples["cqrs_scheduling_run_duration_seconds_count"]
        assert durations[(("command_type", JOB), ("outcome", "completed"))] == count
        assert samples["cqrs_scheduling_commands_failed_total"][(("command_type", JOB),)] == 0
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    text = log.read_text()
    assert worker.returncode == 0, text
    assert f"serving Prometheus metrics on {url}" in text
    assert "Traceback" not in text
    assert len((tmp_path / "out").read_text().split()) == count
    assert scrape(url) is None  # the endpoint went away with the worker


def test_a_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    """--metrics-port on a taken port: exit code 1 and one error line naming the address; no command runs."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*worker_command(f"sqlite:///{tmp_path / 's.db'}"), "--metrics-port", str(port)],
            env=environment(tmp_path / "out"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"error: cannot serve metrics on 127.0.0.1:{port}: "), errors
    assert "Traceback" not in result.stderr
    assert "started on" not in result.stderr  # the service never started


def test_missing_prometheus_client_names_the_extra(tmp_path: Path) -> None:
    """Without prometheus_client, --metrics-port is one line naming the extra to install, exit code 1."""
    argv = ["cqrs-scheduling", *worker_command(f"sqlite:///{tmp_path / 's.db'}")[3:], "--metrics-port", "0"]
    script = (
        "import sys; sys.modules['prometheus_client'] = None  # as if it were not installed\n"
        f"sys.argv = {argv!r}\n"
        "from scheduling.cli import main\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=environment(tmp_path / "out"), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: scheduling.metrics needs the prometheus_client package")
    assert "pip install 'cqrs-scheduling[metrics]'" in lines[0]


def test_metrics_host_without_port_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [*worker_command(f"sqlite:///{tmp_path / 's.db'}"), "--metrics-host", "0.0.0.0"],
        env=environment(tmp_path / "out"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --metrics-host goes with --metrics-port"


@pytest.mark.timeout(120)
def test_gauges_tell_a_dead_fleet_from_a_busy_one(tmp_path: Path) -> None:
    """A real worker holds a long job, then is killed (SIGKILL: no release, no goodbye). Read from another process,
    as the dashboard would: while it lives, one entry is running; one lease duration after its death, nothing is
    running although the entry is still PROCESSING, and a job scheduled since is overdue by exactly its age on
    the reading process's clock: the condition of the fleet-down alert in docs/metrics.md."""
    store_url = f"sqlite:///{tmp_path / 'scheduled.db'}"
    log = tmp_path / "worker.log"
    with log.open("w") as stderr:
        worker = subprocess.Popen(
            [*worker_command(store_url), "--polling-interval", "0.05"],
            env=environment(tmp_path / "out"),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        asyncio.run(_fleet_down(store_url, worker))
    except AssertionError:
        print(log.read_text())  # the worker's side, shown with the failure
        raise
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.wait()


async def _fleet_down(store_url: str, worker: subprocess.Popen[bytes]) -> None:
    registry = CollectorRegistry()
    async with SqlStore(store_url) as store:
        scheduler = Injector([MediatorModule([JobHandler]), SchedulingModule(store=store)]).get(CommandScheduler)
        await scheduler.schedule(Job(n=1, seconds=600))
        alive = StoreGauges(store, registry)  # the wall clock: the worker's leases are real ones
        deadline = time.monotonic() + 60
        running = 0.0
        while running != 1 and worker.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            await alive.refresh()
            running = registry.get_sample_value("cqrs_scheduling_entries_running") or 0.0
        assert running == 1, "the worker never took the job"
        assert registry.get_sample_value("cqrs_scheduling_oldest_overdue_age_seconds") == 0

        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        waiting = await scheduler.get_status(await scheduler.schedule(Job(n=2)))
        assert waiting is not None
        lease = SchedulerSettings().lease_duration  # what the worker ran with: the application's default
        later = ManualClock(datetime.now(UTC) + lease + timedelta(seconds=1))  # no sleeping through the lease
        await StoreGauges(store, registry, clock=later).refresh()
    assert registry.get_sample_value("cqrs_scheduling_entries_running") == 0
    assert registry.get_sample_value("cqrs_scheduling_entries", {"status": "processing"}) == 1
    overdue = registry.get_sample_value("cqrs_scheduling_oldest_overdue_age_seconds")
    assert overdue == (later.now() - waiting.scheduled_for).total_seconds()
    assert overdue is not None and overdue > lease.total_seconds()
