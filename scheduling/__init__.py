"""Scheduled commands: schedule a command for later and run it through the mediator, with retries."""

from .clock import Clock, ManualClock, SystemClock
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
from .scheduler import CommandScheduler, ICommandScheduler
from .service import ScheduledCommandService

__all__ = [
    "AttemptRecord",
    "Clock",
    "CommandScheduler",
    "ICommandScheduler",
    "ManualClock",
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
    "SchedulerSettings",
    "SchedulingModule",
    "SystemClock",
]
