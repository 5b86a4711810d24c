"""Scheduled commands: schedule a command for later and run it through the mediator, with retries.

What lives here, in two layers (the stores they use are the ``stores`` package):

- **The engine**, public: ``scheduler`` (``CommandScheduler``: schedule, cancel, inspect), ``service``
  (``ScheduledCommandService``, the worker), ``options`` (``ScheduleOptions``, ``SchedulerSettings``), ``module``
  (``SchedulingModule``), ``clock``, ``context`` (``CommandContext``, the scheduled run a handler is part of),
  ``entries``, ``notifications``, ``observer``, ``errors``, ``retry`` (backoff as a pure function), ``recurring``
  and ``recurring_ops`` (recurring schedules), ``retention`` (``Retention``: deleting old finished entries),
  ``workers`` (the worker registry as ``WorkerInfo``), ``codec`` (command type names and payloads). The service's
  parts are private: ``_claim_loop`` (claim, sleep, wake; ``_wakeup``), ``_attempt`` (one attempt and its
  outcome), ``_leases`` (heartbeat, recovery, draining), ``_registry`` (this worker's registry record),
  ``_store_calls`` (store retries and failure logs), ``_hooks``
  (startup hooks).
- **The operator tooling**, built on the engine and never imported by it: ``admin`` (the read model and actions
  shared by the command line and the dashboard's API), ``metrics`` (Prometheus, extra ``metrics``), ``web`` (the
  dashboard, extra ``web``), ``cli`` (the ``cqrs-scheduling`` command line, a package of private modules),
  ``_worker`` (the runner behind ``cqrs-scheduling worker``) and ``demo`` (``cqrs-scheduling demo``; its command
  types are named ``scheduling.demo.*`` in stores, so the module keeps its name).

Everything an application needs is importable from here; the names below are the public surface.
"""

from stores.dependencies import UnknownParentError
from stores.queues import QueueInfo, RateLimit

from .clock import Clock, ManualClock, SystemClock
from .context import CommandContext
from .entries import AttemptRecord, ScheduledCommandEntry, ScheduledCommandStatus
from .module import SchedulingModule
from .notifications import (
    ScheduledCommandCancelled,
    ScheduledCommandCompleted,
    ScheduledCommandExpired,
    ScheduledCommandFailed,
    ScheduledCommandNotification,
    ScheduledCommandRetrying,
)
from .options import ScheduleOptions, SchedulerSettings
from .retention import Retention
from .scheduler import CommandScheduler, ICommandScheduler
from .service import ScheduledCommandService
from .workers import WaitingForWorker, WorkerInfo
from .workflows import ParentOutcome, ScheduledGroup

__all__ = [
    "AttemptRecord",
    "Clock",
    "CommandContext",
    "CommandScheduler",
    "ICommandScheduler",
    "ManualClock",
    "ParentOutcome",
    "QueueInfo",
    "RateLimit",
    "Retention",
    "ScheduleOptions",
    "ScheduledCommandCancelled",
    "ScheduledCommandCompleted",
    "ScheduledCommandEntry",
    "ScheduledCommandExpired",
    "ScheduledCommandFailed",
    "ScheduledCommandNotification",
    "ScheduledCommandRetrying",
    "ScheduledCommandService",
    "ScheduledCommandStatus",
    "ScheduledGroup",
    "SchedulerSettings",
    "SchedulingModule",
    "SystemClock",
    "UnknownParentError",
    "WaitingForWorker",
    "WorkerInfo",
]
