"""``{ns}_entries_purged_total{status}``: at zero for every finished status from the start, counting what the
running service's retention deleted, with no ``*_created`` series."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from scheduling_app import App, Fail, Record, eventually, make_app

from scheduling import Retention, ScheduleOptions
from scheduling.metrics import PrometheusObserver, render

DAY = timedelta(days=1)


def purged(registry: CollectorRegistry) -> dict[str, float]:
    body, _ = render(registry)
    return {
        sample.labels["status"]: sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name.startswith("cqrs_scheduling_entries_purged")
    }


async def test_every_finished_status_is_there_at_zero_before_anything_is_purged(registry: CollectorRegistry) -> None:
    """``increase()`` sees the first purge: the series exist (at 0) as soon as the observer does."""
    PrometheusObserver(registry)
    assert purged(registry) == {"completed": 0.0, "failed": 0.0, "cancelled": 0.0, "expired": 0.0}


async def test_the_counter_follows_what_retention_deleted(registry: CollectorRegistry) -> None:
    retention = Retention(completed=DAY, failed=DAY, batch_size=2, batch_pause=timedelta(0))
    app = make_app(observers=[PrometheusObserver(registry)], retention=retention)
    ids = await app.scheduler.schedule_many([Record(value=str(i)) for i in range(3)])
    ids.append(await app.scheduler.schedule(Fail(key="dead"), ScheduleOptions(max_retries=0)))
    await app.service.run_until_idle()
    app.clock.advance(2 * DAY)
    async with app.service:
        await eventually(lambda: _all_gone(app, ids))
    assert purged(registry) == {"completed": 3.0, "failed": 1.0, "cancelled": 0.0, "expired": 0.0}


async def _all_gone(app: App, ids: list[str]) -> bool:
    return all([await app.scheduler.get_status(i) is None for i in ids])
