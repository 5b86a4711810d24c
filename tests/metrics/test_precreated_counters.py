"""Counters at zero for every command type a worker can run, from the moment it starts: ``increase()`` and
``rate()`` need a series to exist before its first event, or they miss that event."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import pytest
from prometheus_client import CollectorRegistry
from scheduling_app import Add, make_app

from scheduling.metrics import PrometheusObserver
from scheduling.observer import SchedulingObserver
from stores import ScheduledCommandStore

REGISTERED = [f"scheduling_app.{name}" for name in ("Add", "Block", "Explode", "Fail", "Record", "Sleep")]
EVENTS = ("scheduled", "completed", "retried", "failed", "expired", "cancelled")


class Announcements(SchedulingObserver):
    """Remembers what each service start announced."""

    def __init__(self) -> None:
        self.started: list[list[str]] = []

    def on_service_started(self, command_types: Sequence[str]) -> None:
        self.started.append(list(command_types))


class Broken(SchedulingObserver):
    def on_service_started(self, command_types: Sequence[str]) -> None:
        raise RuntimeError("cannot prepare")


async def test_a_started_service_shows_every_registered_type_at_zero(
    run_store: ScheduledCommandStore, registry: CollectorRegistry, counts: Callable[[str], dict[str, float]]
) -> None:
    """``service.start()``: before any command exists, each of the six counters has a zero series per registered
    type (and the histograms too); the first completion then reads 0 -> 1, which ``increase()`` counts."""
    announcements = Announcements()
    app = make_app(store=run_store, observers=[PrometheusObserver(registry), announcements])
    assert counts("completed") == {}  # nothing before the service starts
    async with app.service:
        for _ in range(1000):  # the service announces itself from its task, right after opening the store
            if announcements.started:
                break
            await asyncio.sleep(0.001)
        assert announcements.started == [REGISTERED]
        for event in EVENTS:
            assert counts(event) == dict.fromkeys(REGISTERED, 0.0), event
        for command_type in REGISTERED:
            labels = {"command_type": command_type}
            assert registry.get_sample_value("cqrs_scheduling_due_lag_seconds_count", labels) == 0
            for outcome in ("completed", "retrying", "failed"):
                duration = labels | {"outcome": outcome}
                assert registry.get_sample_value("cqrs_scheduling_run_duration_seconds_count", duration) == 0

        await app.scheduler.schedule(Add(a=1, b=1))
        for _ in range(2000):
            if counts("completed")["scheduling_app.Add"] == 1:
                break
            await asyncio.sleep(0.005)
    assert counts("completed") == dict.fromkeys(REGISTERED, 0.0) | {"scheduling_app.Add": 1.0}


async def test_run_until_idle_announces_the_types_too(
    registry: CollectorRegistry, counts: Callable[[str], dict[str, float]]
) -> None:
    """The test and batch entry point starts the same way: zeros for every type before anything ran."""
    announcements = Announcements()
    app = make_app(observers=[PrometheusObserver(registry), announcements])
    assert await app.service.run_until_idle() == 0
    assert announcements.started == [REGISTERED]
    assert counts("failed") == dict.fromkeys(REGISTERED, 0.0)


async def test_an_observer_failing_at_start_does_not_stop_the_service(
    registry: CollectorRegistry, counts: Callable[[str], dict[str, float]], caplog: pytest.LogCaptureFixture
) -> None:
    """A raising ``on_service_started`` is logged like any observer failure; the other observers still get the
    call and commands still run."""

    app = make_app(observers=[Broken(), PrometheusObserver(registry)])
    await app.scheduler.schedule(Add(a=1, b=1))
    with caplog.at_level(logging.ERROR, logger="scheduling.observer"):
        assert await app.service.run_until_idle() == 1
    assert "observer Broken failed in on_service_started" in caplog.text
    assert counts("completed") == dict.fromkeys(REGISTERED, 0.0) | {"scheduling_app.Add": 1.0}


def test_the_default_hook_does_nothing() -> None:
    """A custom observer written before the hook existed keeps working: the base method is a no-op."""
    assert SchedulingObserver().on_service_started(["scheduling_app.Add"]) is None
