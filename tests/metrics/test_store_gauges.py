"""StoreGauges on real SQL stores: every status counted, zeros included, refreshed on demand."""

from __future__ import annotations

from datetime import timedelta

from prometheus_client import CollectorRegistry
from scheduling_app import Add, Fail, make_app

from scheduling import ScheduledCommandStatus, ScheduleOptions
from scheduling.metrics import StoreGauges
from stores import ScheduledCommandStore


def entries(registry: CollectorRegistry, namespace: str = "cqrs_scheduling") -> dict[str, float]:
    return {
        s.labels["status"]: s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == f"{namespace}_entries"
    }


async def test_gauges_count_every_status_of_a_sql_store(
    sql_store: ScheduledCommandStore, registry: CollectorRegistry
) -> None:
    """Empty store: seven zeros (one per status). After real runs: the store's counts, zeros still present; refresh
    follows changes."""
    gauges = StoreGauges(sql_store, registry)
    await gauges.refresh()
    assert entries(registry) == {status.value.lower(): 0 for status in ScheduledCommandStatus}

    app = make_app(store=sql_store)
    await app.scheduler.schedule(Add(a=1, b=1))
    await app.scheduler.schedule(Fail(key="dead"), ScheduleOptions(max_retries=0))
    later = [await app.scheduler.schedule(Add(a=n, b=n), ScheduleOptions(delay=timedelta(hours=1))) for n in range(3)]
    await app.scheduler.cancel(later[0])
    await app.service.run_until_idle()
    await gauges.refresh()
    assert entries(registry) == {
        "pending": 2,
        "processing": 0,
        "completed": 1,
        "failed": 1,
        "cancelled": 1,
        "expired": 0,
        "waiting": 0,
    }

    app.clock.advance(timedelta(hours=2))
    await app.service.run_until_idle()
    again = StoreGauges(sql_store, registry)  # a second instance on the same registry: the same gauge
    await again.refresh()
    assert entries(registry)["pending"] == 0
    assert entries(registry)["completed"] == 3


async def test_gauges_in_another_namespace_stand_beside(
    sql_store: ScheduledCommandStore, registry: CollectorRegistry
) -> None:
    """Two namespaces on one registry are two gauges; a refresh sets only its own."""
    app = make_app(store=sql_store)
    await app.scheduler.schedule(Add(a=1, b=1))
    await StoreGauges(sql_store, registry, namespace="other").refresh()
    StoreGauges(sql_store, registry)  # registered, never refreshed: zeros
    assert entries(registry, "other")["pending"] == 1
    assert entries(registry)["pending"] == 0
