"""Tracing across a real worker process: the span around ``schedule()`` in this process, the attempt spans in the
worker's, linked to it through the trace context stored in the SQLite file; the worker writes its spans to a file.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from injector import Injector
from opentelemetry import trace
from traced_app import Greet, GreetHandler
from tracing_support import span_exporter

from mediator import MediatorModule
from scheduling import CommandScheduler, ScheduleOptions, SchedulingModule
from stores import SqlStore

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "tests" / "support"


async def schedule(store_url: str) -> tuple[dict[str, str], Any]:
    """Schedule a greeting that succeeds and one that fails, inside one span; their ids by name, and the span."""
    async with SqlStore(store_url) as store:
        scheduler = Injector([MediatorModule([GreetHandler]), SchedulingModule(store=store)]).get(CommandScheduler)
        with trace.get_tracer("tests").start_as_current_span("POST /greetings") as span:
            ok = await scheduler.schedule(Greet(name="ada"))
            bad = await scheduler.schedule(Greet(name="bob", fail=True), ScheduleOptions(max_retries=0))
    return {"ok": ok, "bad": bad}, span


def read_spans(path: Path, count: int, timeout: float) -> list[dict[str, Any]]:
    """The attempt spans the worker wrote, once there are ``count`` (or when ``timeout`` runs out)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        spans = [json.loads(line) for line in lines]
        attempts = [s for s in spans if s["name"].startswith("cqrs_scheduling.attempt ")]
        if len(attempts) >= count or time.monotonic() > deadline:
            return spans
        time.sleep(0.05)


@pytest.mark.timeout(90)
def test_attempt_spans_in_the_worker_process_link_to_the_scheduling_span(tmp_path: Path) -> None:
    span_exporter()  # this process's tracer provider: the scheduling span is a real, sampled span
    store_url = f"sqlite:///{tmp_path / 'scheduled.db'}"
    spans_file = tmp_path / "spans.jsonl"
    ids, scheduling_span = asyncio.run(schedule(store_url))
    worker = subprocess.Popen(
        [sys.executable, "-m", "scheduling", "worker", "--app", "traced_app:build_injector", "--store", store_url],
        env=os.environ
        | {"PYTHONPATH": os.pathsep.join([str(SUPPORT), str(ROOT)]), "TRACED_APP_SPANS": str(spans_file)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        spans = read_spans(spans_file, count=2, timeout=60)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            _, stderr = worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            _, stderr = worker.communicate()
    assert worker.returncode == 0, stderr[-3000:]

    attempts = {s["attributes"]["cqrs_scheduling.command_id"]: s for s in spans if s["name"].startswith("cqrs_")}
    assert sorted(attempts) == sorted(ids.values()), stderr[-3000:]
    context = scheduling_span.get_span_context()
    link = {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}
    for span in attempts.values():
        assert span["kind"] == "CONSUMER"
        assert span["links"] == [link]
        assert span["trace_id"] != link["trace_id"]
        assert span["attributes"]["cqrs_scheduling.attempt"] == 1
        assert span["name"] == f"cqrs_scheduling.attempt {span['attributes']['cqrs_scheduling.command_type']}"
    ok, bad = attempts[ids["ok"]], attempts[ids["bad"]]
    assert (ok["attributes"]["cqrs_scheduling.outcome"], ok["status"]) == ("completed", "UNSET")
    assert (bad["attributes"]["cqrs_scheduling.outcome"], bad["status"]) == ("failed", "ERROR")
    assert bad["status_description"] == "LookupError: no such person: bob"
    assert bad["events"] == ["exception"]
    children = [s for s in spans if s["name"] == "compose greeting"]
    assert sorted(c["parent_span_id"] for c in children) == sorted(s["span_id"] for s in attempts.values())
