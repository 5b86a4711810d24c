"""PrometheusObserver through real service runs: counters per command type and outcome, exact histograms."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import cast

import pytest
from injector import inject
from prometheus_client import CollectorRegistry, Counter
from scheduling_app import HANDLERS, Add, Fail, make_app

from mediator import Command, CommandHandler
from scheduling import Clock, ManualClock, ScheduleOptions
from scheduling.metrics import PrometheusObserver
from scheduling.observer import SchedulingObservers
from stores import ScheduledCommandStore

ADD = "scheduling_app.Add"
FAIL = "scheduling_app.Fail"
TICK = f"{__name__}.Tick"
#: The other types ``make_app`` registers handlers for: a started service shows them at zero.
IDLE = {f"scheduling_app.{name}": 0.0 for name in ("Record", "Sleep", "Block", "Explode")}


class Tick(Command[None]):
    """Takes ``seconds`` of manual-clock time: run durations are exact."""

    seconds: float


class TickHandler(CommandHandler[Tick, None]):
    @inject
    def __init__(self, clock: Clock) -> None:
        self.clock = cast(ManualClock, clock)

    async def handle(self, command: Tick) -> None:
        self.clock.advance(timedelta(seconds=command.seconds))


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(f"cqrs_scheduling_{name}", labels)
    assert value is not None, (name, labels)
    return value


async def test_counters_and_histograms_follow_real_runs(
    run_store: ScheduledCommandStore, registry: CollectorRegistry, counts: Callable[[str], dict[str, float]]
) -> None:
    """Scheduled, completed, retried, dead-lettered, expired and cancelled are counted per type; lag is exact."""
    app = make_app(
        store=run_store,
        observers=[PrometheusObserver(registry)],
        handlers=[*HANDLERS, TickHandler],
        retry_delay_base=timedelta(seconds=1),
    )
    scheduler = app.scheduler
    await scheduler.schedule(Add(a=1, b=2), ScheduleOptions(delay=timedelta(seconds=10)))
    await scheduler.schedule(Fail(key="flaky", times=1), ScheduleOptions(max_retries=1))
    await scheduler.schedule(Fail(key="doomed"), ScheduleOptions(max_retries=0))
    await scheduler.schedule(
        Add(a=0, b=0), ScheduleOptions(delay=timedelta(seconds=5), expires_after=timedelta(seconds=1))
    )
    gone = await scheduler.schedule(Add(a=9, b=9), ScheduleOptions(delay=timedelta(hours=1)))
    assert counts("scheduled") == {ADD: 3, FAIL: 2}

    await scheduler.cancel(gone)
    await app.service.run_until_idle()  # at +0: flaky fails once (retry due at +1 s), doomed dead-letters
    app.clock.advance(timedelta(seconds=12))
    await app.service.run_until_idle()  # the Add due at +10 s starts 2 s late, the late one expires, flaky retries
    await scheduler.schedule(Tick(seconds=3))
    await app.service.run_until_idle()  # the tick runs for 3 s of manual-clock time
    assert counts("scheduled") == IDLE | {ADD: 3, FAIL: 2, TICK: 1}

    assert counts("completed") == IDLE | {ADD: 1, FAIL: 1, TICK: 1}
    assert counts("retried") == IDLE | {ADD: 0, FAIL: 1, TICK: 0}
    assert counts("failed") == IDLE | {ADD: 0, FAIL: 1, TICK: 0}
    assert counts("expired") == IDLE | {ADD: 1, FAIL: 0, TICK: 0}
    assert counts("cancelled") == IDLE | {ADD: 1, FAIL: 0, TICK: 0}

    # run duration: manual-clock time, so exact; the expired entry never ran and has no duration
    assert sample(registry, "run_duration_seconds_count", command_type=TICK, outcome="completed") == 1
    assert sample(registry, "run_duration_seconds_sum", command_type=TICK, outcome="completed") == 3.0
    assert sample(registry, "run_duration_seconds_bucket", command_type=TICK, outcome="completed", le="2.5") == 0
    assert sample(registry, "run_duration_seconds_bucket", command_type=TICK, outcome="completed", le="5.0") == 1
    for outcome in ("completed", "retrying", "failed"):
        assert sample(registry, "run_duration_seconds_count", command_type=FAIL, outcome=outcome) == 1
    assert sample(registry, "run_duration_seconds_count", command_type=ADD, outcome="completed") == 1

    # due-to-start lag: the Add ran at +12 s, due at +10 s; flaky's retry, due at +1 s, ran at +12 s
    assert sample(registry, "due_lag_seconds_count", command_type=ADD) == 1
    assert sample(registry, "due_lag_seconds_sum", command_type=ADD) == 2.0
    assert sample(registry, "due_lag_seconds_bucket", command_type=ADD, le="1.0") == 0
    assert sample(registry, "due_lag_seconds_bucket", command_type=ADD, le="2.5") == 1
    assert sample(registry, "due_lag_seconds_count", command_type=FAIL) == 3
    assert sample(registry, "due_lag_seconds_sum", command_type=FAIL) == 11.0
    assert sample(registry, "due_lag_seconds_bucket", command_type=FAIL, le="0.005") == 2  # the two on-time starts
    assert sample(registry, "due_lag_seconds_count", command_type=TICK) == 1
    assert sample(registry, "due_lag_seconds_sum", command_type=TICK) == 0.0


async def test_an_idempotent_repeat_and_a_batch_are_counted_once_each(
    run_store: ScheduledCommandStore, registry: CollectorRegistry, counts: Callable[[str], dict[str, float]]
) -> None:
    """An idempotency key the store already holds stores nothing and counts nothing; schedule_many counts each."""
    app = make_app(store=run_store, observers=[PrometheusObserver(registry)])
    first = await app.scheduler.schedule(Add(a=1, b=1), ScheduleOptions(idempotency_key="once"))
    again = await app.scheduler.schedule(Add(a=1, b=1), ScheduleOptions(idempotency_key="once"))
    assert first == again
    assert counts("scheduled") == {ADD: 1}
    await app.scheduler.schedule_many([Add(a=n, b=n) for n in range(4)] + [Fail(key="x")])
    assert counts("scheduled") == {ADD: 5, FAIL: 1}
    assert await app.service.run_until_idle() == 6
    assert counts("completed") == IDLE | {ADD: 5, FAIL: 0}
    assert counts("retried") == IDLE | {ADD: 0, FAIL: 1}


async def test_two_observers_on_one_registry_share_its_instruments(
    registry: CollectorRegistry, counts: Callable[[str], dict[str, float]]
) -> None:
    """A second observer on the same registry reuses the collectors (no "Duplicated timeseries")."""
    first, second = (
        make_app(observers=[PrometheusObserver(registry)]),
        make_app(observers=[PrometheusObserver(registry)]),
    )
    await first.scheduler.schedule(Add(a=1, b=1))
    await second.scheduler.schedule_many([Add(a=2, b=2), Add(a=3, b=3)])
    await first.service.run_until_idle()
    await second.service.run_until_idle()
    assert counts("scheduled") == IDLE | {ADD: 3, FAIL: 0}
    assert counts("completed") == IDLE | {ADD: 3, FAIL: 0}
    assert sample(registry, "due_lag_seconds_count", command_type=ADD) == 3

    other_namespace = PrometheusObserver(registry, namespace="billing_jobs")  # a second set, side by side
    assert registry.get_sample_value("billing_jobs_commands_scheduled_total", {"command_type": ADD}) is None
    make_app(observers=[other_namespace])
    other_registry = CollectorRegistry()
    PrometheusObserver(other_registry)
    assert other_registry.get_sample_value("cqrs_scheduling_commands_scheduled_total", {"command_type": ADD}) is None


async def test_negative_lag_is_clamped_to_zero(registry: CollectorRegistry) -> None:
    """A start observed before the due time (clock skew between machines) counts as no lag, not a negative one."""
    app = make_app()
    command_id = await app.scheduler.schedule(Add(a=1, b=1), ScheduleOptions(delay=timedelta(minutes=1)))
    entry = await app.scheduler.get_status(command_id)
    assert entry is not None
    PrometheusObserver(registry).on_started(entry, entry.scheduled_for - timedelta(seconds=30))
    assert sample(registry, "due_lag_seconds_sum", command_type=ADD) == 0.0
    assert sample(registry, "due_lag_seconds_bucket", command_type=ADD, le="0.005") == 1


def test_a_name_taken_by_another_collector_fails_cleanly(registry: CollectorRegistry) -> None:
    """A foreign collector owning one of the names: ValueError, and nothing half-registered is left behind."""
    foreign = Counter("cqrs_scheduling_commands_failed", "someone else's", registry=registry)
    with pytest.raises(ValueError, match="cqrs_scheduling_commands_failed"):
        PrometheusObserver(registry)
    assert registry.get_sample_value("cqrs_scheduling_commands_scheduled_total", {"command_type": ADD}) is None
    registry.unregister(foreign)
    observer = PrometheusObserver(registry)  # the conflict removed, the observer registers in full
    observer.on_scheduled([])
    assert "cqrs_scheduling_commands_scheduled" in {family.name for family in registry.collect()}


@pytest.mark.parametrize("namespace", ["", "has-dash", "9starts_with_digit", "spa ce"])
def test_an_invalid_namespace_is_named(registry: CollectorRegistry, namespace: str) -> None:
    with pytest.raises(ValueError, match=f"got {namespace!r}"):
        PrometheusObserver(registry, namespace=namespace)


async def test_an_observer_added_after_the_injector_is_built_sees_what_follows(
    registry: CollectorRegistry, counts: Callable[[str], dict[str, float]]
) -> None:
    """SchedulingObservers.add (what the worker's --metrics-port does): the scheduler and service call it next."""
    app = make_app()
    await app.scheduler.schedule(Add(a=1, b=1))  # before: not counted
    app.injector.get(SchedulingObservers).add(PrometheusObserver(registry))
    await app.scheduler.schedule(Add(a=2, b=2))
    assert await app.service.run_until_idle() == 2
    assert counts("scheduled") == IDLE | {ADD: 1, FAIL: 0}
    assert counts("completed") == IDLE | {ADD: 2, FAIL: 0}
    with pytest.raises(TypeError, match="got the class PrometheusObserver"):
        app.injector.get(SchedulingObservers).add(PrometheusObserver)  # type: ignore[arg-type]
