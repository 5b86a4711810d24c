"""SchedulingObserver: every scheduled, started, finished and cancelled entry is seen once, with its times."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from scheduling_app import Add, Fail, make_app

from scheduling import ScheduleOptions
from scheduling.observer import FinishedOutcome, SchedulingObserver
from stores.entries import ScheduledCommandEntry


class Recorder(SchedulingObserver):
    def __init__(self) -> None:
        self.events: list[tuple[str, str, object]] = []

    def on_scheduled(self, entries: Sequence[ScheduledCommandEntry]) -> None:
        self.events += [("scheduled", e.command_type.rsplit(".", 1)[-1], e.id) for e in entries]

    def on_started(self, entry: ScheduledCommandEntry, started_at: datetime) -> None:
        self.events.append(("started", entry.id, started_at - entry.scheduled_for))

    def on_finished(
        self, entry: ScheduledCommandEntry, outcome: FinishedOutcome, started_at: datetime, finished_at: datetime
    ) -> None:
        self.events.append((outcome, entry.id, finished_at - started_at))

    def on_cancelled(self, entries: Sequence[ScheduledCommandEntry]) -> None:
        self.events += [("cancelled", e.id, None) for e in entries]


class Broken(SchedulingObserver):
    def on_scheduled(self, entries: Sequence[ScheduledCommandEntry]) -> None:
        raise RuntimeError("instrument down")

    def on_finished(
        self, entry: ScheduledCommandEntry, outcome: FinishedOutcome, started_at: datetime, finished_at: datetime
    ) -> None:
        raise RuntimeError("instrument down")


async def test_each_stage_is_observed_with_lag_and_outcome() -> None:
    recorder = Recorder()
    app = make_app(observers=[recorder], retry_delay_base=timedelta(seconds=1))
    ok = await app.scheduler.schedule(Add(a=1, b=2), ScheduleOptions(delay=timedelta(seconds=10)))
    flaky = await app.scheduler.schedule(Fail(key="f", times=1), ScheduleOptions(max_retries=1))
    doomed = await app.scheduler.schedule(Fail(key="d"), ScheduleOptions(max_retries=0))
    late = await app.scheduler.schedule(
        Add(a=0, b=0), ScheduleOptions(delay=timedelta(seconds=5), expires_after=timedelta(seconds=1))
    )
    gone = await app.scheduler.schedule(Add(a=9, b=9), ScheduleOptions(delay=timedelta(hours=1)))
    assert [e[0] for e in recorder.events] == ["scheduled"] * 5
    recorder.events.clear()

    await app.scheduler.cancel(gone)
    await app.service.run_until_idle()  # flaky fails once, doomed is dead-lettered
    app.clock.advance(timedelta(seconds=12))
    await app.service.run_until_idle()  # ok starts 2 s late; late expires; flaky's retry completes

    outcomes = {(kind, entry_id) for kind, entry_id, _ in recorder.events if kind != "started"}
    assert outcomes == {
        ("cancelled", gone),
        ("retrying", flaky),
        ("failed", doomed),
        ("completed", ok),
        ("expired", late),
        ("completed", flaky),
    }
    lags = {entry_id: lag for kind, entry_id, lag in recorder.events if kind == "started"}
    assert lags[ok] == timedelta(seconds=2)  # due at +10 s, started at +12 s on the manual clock
    assert late not in lags  # an expired entry never starts
    assert sorted(lags) == sorted([ok, flaky, doomed])


async def test_an_idempotent_repeat_is_not_counted_twice() -> None:
    recorder = Recorder()
    app = make_app(observers=[recorder])
    first = await app.scheduler.schedule(Add(a=1, b=1), ScheduleOptions(idempotency_key="once"))
    again = await app.scheduler.schedule(Add(a=1, b=1), ScheduleOptions(idempotency_key="once"))
    assert first == again
    assert [e[2] for e in recorder.events] == [first]


async def test_a_failing_observer_is_logged_and_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder()
    app = make_app(observers=[Broken(), recorder])
    command_id = await app.scheduler.schedule(Add(a=2, b=3))
    with caplog.at_level(logging.ERROR, logger="scheduling.observer"):
        assert await app.service.run_until_idle() == 1
    entry = await app.scheduler.get_status(command_id)
    assert entry is not None and entry.result_payload == "5"
    assert [kind for kind, _, _ in recorder.events] == ["scheduled", "started", "completed"]
    assert "observer Broken failed in on_finished" in caplog.text
