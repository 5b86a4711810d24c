"""StoreGauges on real SQL stores: every status counted, zeros included, refreshed on demand; a status above the
exact bound estimated on PostgreSQL and flagged so."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry
from scheduling_app import Add, Fail, make_app

from scheduling import ScheduledCommandStatus, ScheduleOptions
from scheduling.metrics import StoreGauges
from stores import MemoryStore, ScheduledCommandStore, SqlStore


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


def estimated(registry: CollectorRegistry) -> dict[str, float]:
    return {
        s.labels["status"]: s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == "cqrs_scheduling_entries_estimated"
    }


async def test_a_status_above_the_bound_is_flagged_as_an_estimate_on_postgresql(
    sql_store: ScheduledCommandStore, registry: CollectorRegistry
) -> None:
    """Above ``exact_up_to`` PostgreSQL estimates a status from its statistics: ``entries_estimated`` says 1 for it
    and 0 for the exact ones; SQLite counts exactly (every flag 0). ``exact_up_to=None``: every count exact."""
    app = make_app(store=sql_store)
    for n in range(6):
        await app.scheduler.schedule(Add(a=n, b=n), ScheduleOptions(delay=timedelta(hours=1)))
    postgresql = isinstance(sql_store, SqlStore) and sql_store.engine.dialect.name == "postgresql"
    if postgresql:
        async with sql_store.engine.connect() as conn:  # what autovacuum does in time
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("ANALYZE scheduled_commands")
    await StoreGauges(sql_store, registry, exact_up_to=2).refresh()
    assert entries(registry)["pending"] == 6  # ANALYZE reads every row of so small a table
    assert estimated(registry) == {status.value.lower(): 0 for status in ScheduledCommandStatus} | {
        "pending": 1 if postgresql else 0
    }

    await StoreGauges(sql_store, registry, exact_up_to=None).refresh()
    assert estimated(registry)["pending"] == 0


def test_a_negative_bound_is_refused_naming_it(registry: CollectorRegistry) -> None:
    with pytest.raises(ValueError, match="exact_up_to must not be negative, got -5"):
        StoreGauges(MemoryStore(), registry, exact_up_to=-5)
