"""A plain ``def`` handler past its timeout: its thread cannot be interrupted, so the entry stays held until it returns.

The slot and the lease (renewed) stay with the attempt until the thread has returned; only then is the attempt
recorded as timed out and the retry scheduled, so no retry (on this worker or another) runs beside the thread.
In process, on a ManualClock, against every store; the handler is held by a ``threading.Event``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import timedelta

import pytest
from scheduling_app import START, eventually, make_app, status

from mediator import Command, CommandHandler
from scheduling import ScheduledCommandStatus, ScheduleOptions
from stores import ScheduledCommandStore

S = ScheduledCommandStatus


class Threads:
    """What the handler threads did: how many ran, and the most at once."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.lock = threading.Lock()
        self.started = 0
        self.active = 0
        self.max_active = 0


THREADS = Threads()


class Hold(Command[str]):
    pass


class HoldHandler(CommandHandler[Hold, str]):
    def handle(self, command: Hold) -> str:  # a plain def: runs in a thread
        threads = THREADS
        with threads.lock:
            threads.started += 1
            threads.active += 1
            threads.max_active = max(threads.max_active, threads.active)
        try:
            threads.gate.wait(timeout=30)  # bounded: a broken test does not hang the run
            return "returned"
        finally:
            with threads.lock:
                threads.active -= 1


@pytest.fixture(autouse=True)
def fresh_threads() -> None:
    global THREADS
    THREADS = Threads()


async def test_entry_stays_held_until_the_thread_returns_and_no_retry_runs_beside_it(
    any_store: ScheduledCommandStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Past its timeout, the held thread keeps the entry PROCESSING with a renewed lease (another worker takes
    nothing); once it returns, attempt 1 is recorded as timed out and the retry runs after its backoff, alone."""
    caplog.set_level(logging.WARNING, logger="scheduling.service")
    app = make_app(store=any_store, handlers=[HoldHandler])
    options = ScheduleOptions(timeout=timedelta(milliseconds=50), max_retries=1)
    command_id = await app.scheduler.schedule(Hold(), options)
    running = asyncio.create_task(app.service.run_until_idle())

    def timed_out_held() -> bool:
        return any(getattr(r, "action", None) == "timeout_held" for r in caplog.records)

    async def held() -> bool:
        return timed_out_held() or running.done()

    await eventually(held)
    assert timed_out_held(), "the timeout never fired"
    entry = await status(app, command_id)
    assert (entry.status, entry.lease_owner, entry.attempt_count) == (S.PROCESSING, "worker-1", 0)
    assert THREADS.active == 1

    # Well past the lease and the retry's backoff: the heartbeat renews the lease of the held entry...
    app.clock.advance(app.settings.lease_duration + timedelta(seconds=30))
    renewed_past = app.clock.now()

    async def renewed() -> bool:
        held_entry = await status(app, command_id)
        return held_entry.lease_expires_at is not None and held_entry.lease_expires_at > renewed_past

    await eventually(renewed)
    # ...so another worker neither recovers it nor runs a retry beside the thread.
    other = make_app(store=any_store, clock=app.clock, handlers=[HoldHandler], worker_id="worker-2")
    assert await other.service.run_until_idle() == 0
    assert (await status(app, command_id)).status is S.PROCESSING
    assert not running.done()
    assert (THREADS.started, THREADS.active) == (1, 1)

    THREADS.gate.set()
    async with asyncio.timeout(10):
        assert await running == 1
    returned_at = app.clock.now()
    entry = await status(app, command_id)
    assert (entry.status, entry.retry_count) == (S.PENDING, 1)
    assert entry.scheduled_for == returned_at + app.settings.retry_delay_base  # counted from the thread's return
    [attempt] = await app.scheduler.get_attempts(command_id)
    assert attempt.outcome == "timed_out"
    assert entry.error_message is not None
    assert entry.error_message.startswith(
        "TimeoutError: attempt exceeded its timeout of 0.05s; its plain def handler could not be interrupted and "
        "its thread returned "
    )
    assert entry.error_message.endswith("s later (the entry was held until then)")

    app.clock.advance(app.settings.retry_delay_base)
    async with asyncio.timeout(10):
        assert await app.service.run_until_idle() == 1
    entry = await status(app, command_id)
    assert (entry.status, entry.result_payload) == (S.COMPLETED, '"returned"')
    attempts = await app.scheduler.get_attempts(command_id)
    assert [(a.attempt, a.outcome) for a in attempts] == [(1, "timed_out"), (2, "completed")]
    assert (THREADS.started, THREADS.max_active) == (2, 1)
    assert entry.started_at is not None and entry.started_at >= START


async def test_stopping_while_the_thread_runs_past_its_timeout_waits_for_it(
    any_store: ScheduledCommandStore, caplog: pytest.LogCaptureFixture
) -> None:
    """An immediate stop while the thread is held past its timeout: the entry is given back only once the thread
    has returned (never to another worker beside it), and the stop, not the timeout, decides: no attempt counted."""
    caplog.set_level(logging.WARNING, logger="scheduling.service")
    app = make_app(store=any_store, handlers=[HoldHandler])
    command_id = await app.scheduler.schedule(Hold(), ScheduleOptions(timeout=timedelta(milliseconds=50)))
    await app.service.start()

    async def timed_out_held() -> bool:
        return any(getattr(r, "action", None) == "timeout_held" for r in caplog.records)

    await eventually(timed_out_held)
    stopping = asyncio.create_task(app.service.stop(immediate=True))
    # The stop must not finish while the thread runs: give it every chance to (bounded), then check it did not.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(stopping), timeout=0.3)
    assert (await status(app, command_id)).status is S.PROCESSING

    THREADS.gate.set()
    async with asyncio.timeout(10):
        await stopping
    entry = await status(app, command_id)
    assert (entry.status, entry.attempt_count, entry.lease_owner) == (S.PENDING, 0, None)
    assert await app.scheduler.get_attempts(command_id) == []
    assert (THREADS.started, THREADS.max_active) == (1, 1)
