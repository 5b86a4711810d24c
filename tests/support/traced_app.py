"""An application for the tracing test across a worker process: its spans are written to a file, one JSON line each.

``TRACED_APP_SPANS`` names the file. ``Greet`` succeeds, or fails when ``fail`` is set; its handler opens a span of
its own (a child of the attempt's span).
"""

from __future__ import annotations

import os
from pathlib import Path

from injector import Injector
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from tracing_support import JsonLinesExporter

from mediator import Command, CommandHandler, MediatorModule
from scheduling import SchedulingModule
from stores import MemoryStore


class Greet(Command[str]):
    name: str
    fail: bool = False


class GreetHandler(CommandHandler[Greet, str]):
    async def handle(self, command: Greet) -> str:
        with trace.get_tracer("traced_app").start_as_current_span("compose greeting"):
            if command.fail:
                raise LookupError(f"no such person: {command.name}")
            return f"hello {command.name}"


def build_injector() -> Injector:
    """The factory named by ``--app``: sets this process's tracer provider, exporting to the spans file."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(Path(os.environ["TRACED_APP_SPANS"]))))
    trace.set_tracer_provider(provider)
    return Injector([MediatorModule(handlers=[GreetHandler]), SchedulingModule(store=MemoryStore())])
