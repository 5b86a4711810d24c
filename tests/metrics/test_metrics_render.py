"""render(): the exposition body and content type, parsed back with prometheus_client's own parsers."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from scheduling_app import Add, Fail, make_app

from scheduling import ScheduleOptions
from scheduling.metrics import PrometheusObserver, StoreGauges, render

ADD = "scheduling_app.Add"


async def test_render_is_the_text_format_with_every_family(registry: CollectorRegistry) -> None:
    """The body parses as the Prometheus text format and carries counters, histograms and the gauge."""
    app = make_app(observers=[PrometheusObserver(registry)])
    await app.scheduler.schedule_many([Add(a=1, b=1), Add(a=2, b=2)])
    await app.scheduler.schedule(Fail(key="x"), ScheduleOptions(max_retries=0))
    await app.service.run_until_idle()
    await StoreGauges(app.store, registry).refresh()

    body, content_type = render(registry)
    assert content_type.startswith("text/plain; version=0.0.4")
    families = {family.name: family for family in text_string_to_metric_families(body.decode())}
    assert families["cqrs_scheduling_commands_completed"].type == "counter"
    assert families["cqrs_scheduling_run_duration_seconds"].type == "histogram"
    assert families["cqrs_scheduling_due_lag_seconds"].type == "histogram"
    assert families["cqrs_scheduling_entries"].type == "gauge"
    completed = {
        s.labels["command_type"]: s.value
        for s in families["cqrs_scheduling_commands_completed"].samples
        if s.name.endswith("_total")
    }
    assert completed[ADD] == 2
    assert completed["scheduling_app.Fail"] == 0
    statuses = {s.labels["status"]: s.value for s in families["cqrs_scheduling_entries"].samples}
    assert statuses["completed"] == 2
    assert statuses["failed"] == 1
    assert len(statuses) == 7  # one per status, WAITING included
    labels = {key for family in families.values() for s in family.samples for key in s.labels}
    assert labels <= {"command_type", "outcome", "status", "state", "le"}  # never an id: bounded cardinality


async def test_render_speaks_openmetrics_when_asked(registry: CollectorRegistry) -> None:
    """An Accept header asking for OpenMetrics (as Prometheus sends) gets it, ending with # EOF."""
    app = make_app(observers=[PrometheusObserver(registry)])
    await app.scheduler.schedule(Add(a=1, b=1))
    body, content_type = render(registry, accept="application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    families = {family.name: family for family in parse_openmetrics(body.decode())}
    scheduled = [s for s in families["cqrs_scheduling_commands_scheduled"].samples if s.name.endswith("_total")]
    assert [(s.labels["command_type"], s.value) for s in scheduled] == [(ADD, 1.0)]


def test_render_defaults_to_the_global_registry() -> None:
    """Without a registry, render exposes prometheus_client.REGISTRY (with its process metrics)."""
    body, _ = render()
    names = {family.name for family in text_string_to_metric_families(body.decode())}
    assert "python_info" in names
