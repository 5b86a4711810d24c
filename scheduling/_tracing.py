"""OpenTelemetry tracing, when the ``otel`` extra (``opentelemetry-api``) is installed.

``schedule()`` stores the trace context active at that moment with the entry (:func:`capture`: the propagator's
fields, ``traceparent`` and ``tracestate`` for W3C, as JSON). Every attempt then runs in a span of its own (kind
CONSUMER, a new trace) linked to that context (:func:`attempt_span`), current while the handler runs, so the
handler's own spans are its children; :func:`record_outcome` and :func:`record_failure` put the outcome on it.

The import is tried once, here. Without the extra ``ENABLED`` is False and callers skip every call, so tracing
costs nothing; with it, spans go wherever the application's tracer provider sends them (nowhere until it sets one).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .entries import AttemptOutcome, ScheduledCommandEntry

__all__ = ["ENABLED", "attempt_span", "capture", "recording", "record_failure", "record_outcome"]

if TYPE_CHECKING:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.trace import Link, SpanKind, Status, StatusCode

    ENABLED = True
else:
    try:
        from opentelemetry import context as otel_context
        from opentelemetry import propagate, trace
        from opentelemetry.trace import Link, SpanKind, Status, StatusCode
    except ImportError:  # the ``otel`` extra is not installed: tracing is off, at no cost
        ENABLED = False
    else:
        ENABLED = True

#: The instrumentation scope's name, as tracer providers and backends show it.
SCOPE = "cqrs_scheduling"

if ENABLED:
    #: The API's default provider (until the application sets one) and its explicit no-op: nothing would record.
    _NOT_RECORDING = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
    #: A proxy until the application sets its provider, then that provider's tracer.
    _tracer = trace.get_tracer(SCOPE)

#: Span attribute names.
COMMAND_TYPE = "cqrs_scheduling.command_type"
COMMAND_ID = "cqrs_scheduling.command_id"
ATTEMPT = "cqrs_scheduling.attempt"
OUTCOME = "cqrs_scheduling.outcome"


def capture() -> str | None:
    """The trace context active now, as the JSON of the propagator's fields; ``None`` without the extra or outside
    a recording trace (no valid current span)."""
    # An empty context holds no span: the usual case outside instrumented code, at a quarter of the span lookup's cost
    # on every ``schedule()``.
    if not ENABLED or not otel_context.get_current() or not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return json.dumps(carrier, separators=(",", ":"), sort_keys=True) if carrier else None


_provider_set = False


def recording() -> bool:
    """Whether the application has set a tracer provider that may record; without one an attempt opens no span at
    all (a non-recording span still costs tens of microseconds, the stored context's extraction included). Once
    true it stays true: the API sets the global provider once and refuses to replace it."""
    global _provider_set
    if not _provider_set:
        _provider_set = not isinstance(trace.get_tracer_provider(), _NOT_RECORDING)
    return _provider_set


def _links(stored: str | None) -> list[Link]:
    """A link to the stored context, when there is a valid one (a damaged value is ignored, never fatal)."""
    if not stored:
        return []
    try:
        carrier = json.loads(stored)
    except ValueError:
        return []
    if not isinstance(carrier, dict):
        return []
    context = trace.get_current_span(propagate.extract({str(k): str(v) for k, v in carrier.items()}))
    span_context = context.get_span_context()
    return [Link(span_context)] if span_context.is_valid else []


@contextmanager
def attempt_span(entry: ScheduledCommandEntry, queue: str) -> Iterator[None]:
    """Run one attempt of ``entry`` in a span of its own, current meanwhile, linked to the context of its
    ``schedule()``. Only call it when ``ENABLED`` and :func:`recording`."""
    attributes: dict[str, str | int] = {
        COMMAND_TYPE: entry.command_type,
        COMMAND_ID: entry.id,
        ATTEMPT: entry.attempt_count + 1,
        "messaging.system": SCOPE,
        "messaging.operation.type": "process",
        "messaging.destination.name": queue,
        "messaging.message.id": entry.id,
    }
    with _tracer.start_as_current_span(
        f"cqrs_scheduling.attempt {entry.command_type}",
        context=trace.set_span_in_context(trace.INVALID_SPAN),  # a trace of its own, linked to the scheduling one
        kind=SpanKind.CONSUMER,
        links=_links(entry.trace_context),
        attributes=attributes,
        record_exception=False,  # the attempt's exceptions are recorded by record_failure, with their outcome
        set_status_on_exception=False,
    ):
        yield


def record_outcome(outcome: str) -> None:
    """Set the outcome of the attempt whose span is current (``completed``, ``released``)."""
    trace.get_current_span().set_attribute(OUTCOME, outcome)


def record_failure(outcome: AttemptOutcome, exc: BaseException, message: str) -> None:
    """Record a failed attempt on the current span: its outcome, the exception, and an error status."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    span.set_attribute(OUTCOME, outcome)
    span.set_status(Status(StatusCode.ERROR, message))
    try:
        span.record_exception(exc)
    except Exception:  # noqa: BLE001 - an exception whose str() fails: the event says what we know, never raises
        span.add_event("exception", {"exception.type": type(exc).__qualname__, "exception.message": message})
