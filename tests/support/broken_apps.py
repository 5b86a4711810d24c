"""Application factories that are wrong the ways a newcomer's first one is, for the command line's error tests."""

from __future__ import annotations

from injector import Injector

from mediator import MediatorModule


def raising() -> Injector:
    """A factory whose own code fails (say, a missing setting)."""
    settings: dict[str, str] = {}
    if not settings:
        raise RuntimeError("DATABASE_URL is not set")
    return Injector()


def without_scheduling() -> Injector:
    """A factory that forgot SchedulingModule: the mediator alone."""
    return Injector([MediatorModule([])])
