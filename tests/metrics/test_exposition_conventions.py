"""What every scrape looks like: no ``*_created`` series of ours (without touching the application's metrics), and
every status and outcome label value in lower case."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from scheduling_app import Add, Fail, make_app

from scheduling import ScheduledCommandStatus, ScheduleOptions
from scheduling.metrics import PrometheusObserver, StoreGauges, render

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


async def exercised(registry: CollectorRegistry) -> None:
    """Every counter, both histograms and the store gauges with values: completed, retried, dead-lettered."""
    app = make_app(observers=[PrometheusObserver(registry)])
    await app.scheduler.schedule(Add(a=1, b=1))
    await app.scheduler.schedule(Fail(key="flaky", times=1), ScheduleOptions(max_retries=1))
    await app.scheduler.schedule(Fail(key="dead"), ScheduleOptions(max_retries=0))
    await app.scheduler.cancel(await app.scheduler.schedule(Add(a=2, b=2)))
    await app.service.run_until_idle()
    await StoreGauges(app.store, registry, clock=app.clock).refresh()


async def test_no_created_series_in_either_format(registry: CollectorRegistry) -> None:
    """Neither the text format nor OpenMetrics carries a ``*_created`` sample of ours; the counters and
    histograms themselves are all there."""
    await exercised(registry)
    for accept, parse in ((None, text_string_to_metric_families), (OPENMETRICS, parse_openmetrics)):
        body, _ = render(registry, accept=accept)
        samples = [s for family in parse(body.decode()) for s in family.samples]
        assert [s.name for s in samples if s.name.endswith("_created")] == [], accept
        names = {s.name for s in samples}
        assert "cqrs_scheduling_commands_completed_total" in names
        assert "cqrs_scheduling_run_duration_seconds_bucket" in names
        assert "cqrs_scheduling_due_lag_seconds_count" in names


async def test_the_applications_own_metrics_keep_their_created_series(registry: CollectorRegistry) -> None:
    """Leaving ours out changes nothing process-wide: a counter and a histogram of the application on the same
    registry still expose ``*_created`` (the client's default), so nobody's dashboards change behind their back."""
    signups = Counter("myapp_signups", "the application's own counter", registry=registry)
    latency = Histogram("myapp_latency_seconds", "the application's own histogram", registry=registry)
    await exercised(registry)
    signups.inc()
    latency.observe(0.2)
    assert registry.get_sample_value("myapp_signups_created") is not None
    assert registry.get_sample_value("myapp_latency_seconds_created") is not None
    assert (
        registry.get_sample_value("cqrs_scheduling_commands_completed_created", {"command_type": "scheduling_app.Add"})
        is None
    )
    assert (
        registry.get_sample_value("cqrs_scheduling_commands_completed_total", {"command_type": "scheduling_app.Add"})
        == 1
    )


async def test_status_and_outcome_values_are_lower_case(registry: CollectorRegistry) -> None:
    """One convention for every label value naming a state: ``status`` of the entries gauge and ``outcome`` of the
    run duration, both lower case (``status="failed"`` reads like ``outcome="failed"``)."""
    await exercised(registry)
    body, _ = render(registry)
    values: dict[str, set[str]] = {"status": set(), "outcome": set()}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            for label in values:
                if label in s.labels:
                    values[label].add(s.labels[label])
    assert values["status"] == {"pending", "waiting", "processing", "completed", "failed", "cancelled", "expired"}
    assert values["status"] == {status.value.lower() for status in ScheduledCommandStatus}
    assert values["outcome"] == {"completed", "retrying", "failed"}
    assert registry.get_sample_value("cqrs_scheduling_entries", {"status": "failed"}) == 1
    assert registry.get_sample_value("cqrs_scheduling_entries", {"status": "cancelled"}) == 1
    assert registry.get_sample_value("cqrs_scheduling_entries", {"status": "FAILED"}) is None
