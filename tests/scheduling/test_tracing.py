"""OpenTelemetry: the trace context at ``schedule()`` is stored with the entry; each attempt runs in a span of its
own, linked to it, with the command type, id, attempt number and outcome; failures are recorded on the span.

In process, on a ManualClock and a MemoryStore, with the SDK's in-memory exporter (every store keeps the context:
see the store contract suite; a real worker process: tests/processes/test_tracing_process.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from datetime import timedelta
from pathlib import Path

from opentelemetry import baggage, context, propagate, trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, StatusCode
from scheduling_app import make_app, status
from tracing_support import span_exporter

from mediator import Command, CommandHandler
from scheduling import ScheduleOptions
from scheduling._tracing import ATTEMPT, COMMAND_ID, COMMAND_TYPE, OUTCOME

ROOT = Path(__file__).resolve().parents[2]

tracer = trace.get_tracer("tests")


class Charge(Command[str]):
    failures: int = 0  # attempts that fail before one succeeds


CALLS: dict[str, int] = {}


class ChargeHandler(CommandHandler[Charge, str]):
    async def handle(self, command: Charge) -> str:
        with tracer.start_as_current_span("call the payment provider"):  # the handler's own span: a child
            key = command.model_dump_json()
            CALLS[key] = CALLS.get(key, 0) + 1
            if CALLS[key] <= command.failures:
                raise ConnectionError(f"provider down (call {CALLS[key]})")
            return "ch-1"


class Blocking(Command[None]):
    hang: bool = False


class BlockingHandler(CommandHandler[Blocking, None]):
    def handle(self, command: Blocking) -> None:  # a plain def: runs in a thread, in a copy of the context
        with tracer.start_as_current_span("blocking io"):
            if command.hang:
                threading.Event().wait(0.2)


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() of this exception fails")


class Odd(Command[None]):
    pass


class OddHandler(CommandHandler[Odd, None]):
    async def handle(self, command: Odd) -> None:
        raise Unprintable


HANDLERS: list[type] = [ChargeHandler, BlockingHandler, OddHandler]


def traceparent_of(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def attempt_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith("cqrs_scheduling.attempt ")]


async def test_an_attempt_span_is_linked_to_the_scheduling_span() -> None:
    """The entry holds the W3C traceparent of the span around ``schedule()``; the attempt's CONSUMER span, in a
    trace of its own, links to that span and carries the command type, id, attempt number and outcome."""
    exporter = span_exporter()
    CALLS.clear()
    app = make_app(handlers=HANDLERS)
    with tracer.start_as_current_span("POST /orders") as request:
        command_id = await app.scheduler.schedule(Charge())
    scheduling_context = request.get_span_context()
    entry = await status(app, command_id)
    assert entry.trace_context is not None
    traceparent = json.loads(entry.trace_context)["traceparent"]
    assert traceparent == traceparent_of(scheduling_context)

    await app.service.run_until_idle()

    [span] = attempt_spans(exporter)
    assert span.name == f"cqrs_scheduling.attempt {entry.command_type}"
    assert span.kind is SpanKind.CONSUMER
    assert [(link.context.trace_id, link.context.span_id) for link in span.links] == [
        (scheduling_context.trace_id, scheduling_context.span_id)
    ]
    assert span.context.trace_id != scheduling_context.trace_id  # a trace of its own, linked
    assert span.parent is None
    attributes = dict(span.attributes or {})
    assert attributes[COMMAND_TYPE] == entry.command_type
    assert attributes[COMMAND_ID] == command_id
    assert attributes[ATTEMPT] == 1
    assert attributes[OUTCOME] == "completed"
    assert span.status.status_code is StatusCode.UNSET
    [child] = [s for s in exporter.get_finished_spans() if s.name == "call the payment provider"]
    assert child.parent is not None and child.parent.span_id == span.context.span_id


async def test_each_attempt_has_its_span_and_failures_are_recorded() -> None:
    """Two failed attempts and a third that succeeds: three spans, attempts 1, 2, 3, each linked to the same
    scheduling span; the failed ones have an error status with the error message and the exception as an event."""
    exporter = span_exporter()
    CALLS.clear()
    app = make_app(handlers=HANDLERS)
    with tracer.start_as_current_span("POST /orders") as request:
        await app.scheduler.schedule(Charge(failures=2), ScheduleOptions(max_retries=3))
    for _ in range(3):
        await app.service.run_until_idle()
        app.clock.advance(timedelta(seconds=30))

    spans = attempt_spans(exporter)
    assert [(s.attributes or {})[ATTEMPT] for s in spans] == [1, 2, 3]
    assert [(s.attributes or {})[OUTCOME] for s in spans] == ["failed", "failed", "completed"]
    assert {link.context.span_id for s in spans for link in s.links} == {request.get_span_context().span_id}
    for number, span in enumerate(spans[:2], start=1):
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == f"ConnectionError: provider down (call {number})"
        [event] = span.events
        assert event.name == "exception"
        assert (event.attributes or {})["exception.type"] == "ConnectionError"
    assert spans[2].status.status_code is StatusCode.UNSET


async def test_a_timed_out_def_handler_has_a_timed_out_span_and_its_thread_spans_are_children() -> None:
    exporter = span_exporter()
    app = make_app(handlers=HANDLERS)
    await app.scheduler.schedule(Blocking(hang=True), ScheduleOptions(timeout=timedelta(milliseconds=20)))
    await app.scheduler.schedule(Blocking())
    await app.service.run_until_idle()

    spans = {str((s.attributes or {})[OUTCOME]): s for s in attempt_spans(exporter)}
    assert sorted(spans) == ["completed", "timed_out"]
    timed_out = spans["timed_out"]
    assert timed_out.status.status_code is StatusCode.ERROR
    assert (timed_out.status.description or "").startswith("TimeoutError: attempt exceeded its timeout of 0.02s")
    children = [s for s in exporter.get_finished_spans() if s.name == "blocking io"]
    assert sorted(c.parent.span_id for c in children if c.parent) == sorted(s.context.span_id for s in spans.values())


async def test_without_a_trace_at_schedule_nothing_is_stored_and_the_span_has_no_link() -> None:
    exporter = span_exporter()
    app = make_app(handlers=HANDLERS)
    command_id = await app.scheduler.schedule(Blocking())
    assert (await status(app, command_id)).trace_context is None
    await app.service.run_until_idle()
    [span] = attempt_spans(exporter)
    assert list(span.links) == []


async def test_a_context_without_a_span_stores_nothing_and_a_propagated_one_is_stored() -> None:
    """A context holding other values (baggage) but no span stores nothing; a remote parent extracted from incoming
    headers and attached, without a span started here (middleware with no SDK span), is stored as it came."""
    app = make_app(handlers=HANDLERS)
    token = context.attach(baggage.set_baggage("tenant", "7"))
    try:
        assert (await status(app, await app.scheduler.schedule(Blocking()))).trace_context is None
    finally:
        context.detach(token)
    incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    token = context.attach(propagate.extract({"traceparent": incoming}))
    try:
        stored = (await status(app, await app.scheduler.schedule(Blocking()))).trace_context
    finally:
        context.detach(token)
    assert stored is not None and json.loads(stored)["traceparent"] == incoming


async def test_schedule_many_stores_the_context_with_every_entry() -> None:
    span_exporter()
    app = make_app(handlers=HANDLERS)
    with tracer.start_as_current_span("batch") as batch:
        ids = await app.scheduler.schedule_many([Blocking() for _ in range(3)])
    expected = traceparent_of(batch.get_span_context())
    for command_id in ids:
        stored = (await status(app, command_id)).trace_context
        assert stored is not None and json.loads(stored)["traceparent"] == expected


def test_without_the_extra_nothing_is_traced_and_opentelemetry_is_never_imported(tmp_path: Path) -> None:
    """With ``opentelemetry`` not importable (the extra not installed), scheduling and running a command work,
    store no trace context, and never import it."""
    script = tmp_path / "no_otel.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, sys
            sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
            from injector import Injector
            from mediator import Command, CommandHandler, MediatorModule
            from scheduling import CommandScheduler, ScheduledCommandService, SchedulingModule, _tracing
            from stores import MemoryStore

            class Ping(Command[None]):
                pass

            class PingHandler(CommandHandler[Ping, None]):
                async def handle(self, command: Ping) -> None:
                    pass

            async def main() -> None:
                injector = Injector([MediatorModule([PingHandler]), SchedulingModule(store=MemoryStore())])
                command_id = await injector.get(CommandScheduler).schedule(Ping())
                assert await injector.get(ScheduledCommandService).run_until_idle() == 1
                entry = await injector.get(CommandScheduler).get_status(command_id)
                assert entry is not None and entry.status.value == "COMPLETED" and entry.trace_context is None
                assert _tracing.ENABLED is False
                assert not any(name.startswith("opentelemetry.") for name in sys.modules), "imported"

            asyncio.run(main())
            print("ok")
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr[-3000:]


async def test_an_exception_that_cannot_be_printed_is_still_recorded() -> None:
    """The SDK's ``record_exception`` calls ``str()``; when that raises, the span still gets an exception event and
    the attempt is recorded as failed (tracing never breaks recording an outcome)."""
    exporter = span_exporter()
    app = make_app(handlers=HANDLERS)
    command_id = await app.scheduler.schedule(Odd(), ScheduleOptions(max_retries=0))
    await app.service.run_until_idle()
    entry = await status(app, command_id)
    assert entry.status.value == "FAILED"
    [span] = attempt_spans(exporter)
    assert span.status.status_code is StatusCode.ERROR
    [event] = span.events
    assert (event.name, (event.attributes or {})["exception.type"]) == ("exception", "Unprintable")
