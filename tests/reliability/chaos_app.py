"""The worker application of the reliability tests: ``worker_app.Job`` with settings tuned for fast recovery.

A short lease (2 s, so renewed about every 0.67 s) makes a killed worker's commands come back quickly; retries
wait a constant 0.2 s; many retries are allowed, so that an entry whose attempts are lost again and again (its
worker killed each time) is never dead-lettered by the chaos itself.

Started as ``cqrs-scheduling worker --app chaos_app:build_injector --store URL`` with ``WORKER_APP_OUT`` naming the
file that the job handler appends executed job numbers to.
"""

from __future__ import annotations

from datetime import timedelta

from injector import Injector
from worker_app import JobHandler

from mediator import MediatorModule
from scheduling import SchedulerSettings, SchedulingModule
from stores import MemoryStore

#: The settings every chaos worker runs with (the command line overrides the store and the concurrency).
SETTINGS = SchedulerSettings(
    lease_duration=timedelta(seconds=2),
    shutdown_grace=timedelta(seconds=0.5),
    retry_delay_base=timedelta(seconds=0.2),
    exponential_backoff=False,
    max_retries=100,
    polling_interval=timedelta(seconds=0.5),
)


def build_injector() -> Injector:
    """The factory named by ``--app``; the worker command replaces the memory store with its ``--store``."""
    return Injector([MediatorModule(handlers=[JobHandler]), SchedulingModule(store=MemoryStore(), settings=SETTINGS)])
