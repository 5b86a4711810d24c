"""The gauges an alert uses when no worker is left: the age of the oldest overdue entry and the entries a live
worker holds, read from every store with a manual clock (no sleeping through leases)."""

from __future__ import annotations

from datetime import timedelta

import httpx
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from scheduling_app import Add, make_app

from scheduling import ScheduleOptions
from scheduling.metrics import StoreGauges, serve_metrics
from stores import ScheduledCommandStore
from stores.workers import StoredWorker

LEASE = timedelta(seconds=60)


def gauge(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(f"cqrs_scheduling_{name}", labels)
    assert value is not None, name
    return value


async def test_overdue_age_and_running_follow_the_store(
    any_store: ScheduledCommandStore, registry: CollectorRegistry
) -> None:
    """Nothing due: 0. Due and unclaimed: its age, from the oldest. A claim under a live lease: running. The lease
    lapsing (its worker gone): no longer running, although the entry is still PROCESSING. A worker taking over
    and finishing: back to zero."""
    app = make_app(store=any_store)
    gauges = StoreGauges(any_store, registry, clock=app.clock)
    await gauges.refresh()
    assert gauge(registry, "oldest_overdue_age_seconds") == 0
    assert gauge(registry, "entries_running") == 0

    await app.scheduler.schedule(Add(a=1, b=1), ScheduleOptions(delay=timedelta(seconds=10)))
    await gauges.refresh()
    assert gauge(registry, "oldest_overdue_age_seconds") == 0  # pending, but not due yet

    app.clock.advance(timedelta(seconds=25))
    await app.scheduler.schedule(Add(a=2, b=2))  # due now: younger than the first
    await gauges.refresh()
    assert gauge(registry, "oldest_overdue_age_seconds") == 15.0

    (claimed,) = await any_store.claim_due(now=app.clock.now(), limit=1, worker_id="doomed", lease_duration=LEASE)
    app.clock.advance(timedelta(seconds=5))
    await gauges.refresh()
    assert gauge(registry, "oldest_overdue_age_seconds") == 5.0  # the second one, waiting since its due time
    assert gauge(registry, "entries_running") == 1
    assert gauge(registry, "entries", status="processing") == 1

    app.clock.advance(LEASE)  # the claiming worker never renewed: as if it had died
    await gauges.refresh()
    assert gauge(registry, "entries_running") == 0
    assert gauge(registry, "entries", status="processing") == 1  # what the status count alone cannot tell
    assert gauge(registry, "oldest_overdue_age_seconds") == 65.0

    # a live worker runs the waiting one and reclaims the lost one: its lost attempt is retried after a backoff
    assert await app.service.run_until_idle() == 2
    await gauges.refresh()
    lost = await any_store.get(claimed.id)
    assert lost is not None
    assert lost.status.value == "PENDING"
    assert lost.scheduled_for > app.clock.now()
    assert gauge(registry, "oldest_overdue_age_seconds") == 0  # pending again, but not due yet
    assert gauge(registry, "entries_running") == 0
    assert gauge(registry, "entries", status="completed") == 1


async def test_stuck_entries_and_workers_per_state_follow_the_registry(
    any_store: ScheduledCommandStore, registry: CollectorRegistry
) -> None:
    """Every state exists at zero before any worker registers. A worker that claims and dies: running, then gone,
    its entry stuck; recovery by a live worker: nothing stuck."""
    app = make_app(store=any_store)
    gauges = StoreGauges(any_store, registry, clock=app.clock)
    await gauges.refresh()
    assert {state: gauge(registry, "workers", state=state) for state in ("running", "stopping", "gone")} == {
        "running": 0,
        "stopping": 0,
        "gone": 0,
    }
    assert gauge(registry, "entries_stuck") == 0

    now = app.clock.now()
    await any_store.register_worker(
        StoredWorker(worker_id="doomed", host="h", pid=1, started_at=now, last_seen_at=now, lease_duration=LEASE)
    )
    await app.scheduler.schedule(Add(a=1, b=1))
    await any_store.claim_due(now=now, limit=1, worker_id="doomed", lease_duration=LEASE)
    await gauges.refresh()
    assert (gauge(registry, "workers", state="running"), gauge(registry, "entries_stuck")) == (1, 0)

    app.clock.advance(LEASE + timedelta(seconds=1))
    await gauges.refresh()
    assert (gauge(registry, "workers", state="running"), gauge(registry, "workers", state="gone")) == (0, 1)
    assert gauge(registry, "entries_stuck") == 1

    await app.service.run_until_idle()
    await gauges.refresh()
    assert gauge(registry, "entries_stuck") == 0


async def test_serve_metrics_reads_time_from_the_given_clock(registry: CollectorRegistry) -> None:
    """``serve_metrics(clock=...)`` (the worker passes the application's clock): the overdue age it serves is
    measured on that clock."""
    app = make_app()
    await app.scheduler.schedule(Add(a=1, b=1))
    app.clock.advance(timedelta(minutes=3))
    async with (
        serve_metrics(app.store, port=0, registry=registry, clock=app.clock) as endpoint,
        httpx.AsyncClient(timeout=5) as client,
    ):
        text = (await client.get(endpoint.url)).text
    samples = {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples["cqrs_scheduling_oldest_overdue_age_seconds"] == 180.0
    assert samples["cqrs_scheduling_entries_running"] == 0
