"""The public surface of each package is exactly the contract (shared design, API section per package)."""

from __future__ import annotations

import importlib

import pytest

#: Section 1 of the contract: ``from mediator import (...)``.
MEDIATOR_API = [
    "Command",
    "CommandHandler",
    "DuplicateHandlerError",
    "HandlerNotFoundError",
    "Mediator",
    "MediatorError",
    "MediatorModule",
    "Notification",
    "NotificationHandler",
    "PipelineBehavior",
    "Query",
    "QueryHandler",
]


def assert_public_api(package_name: str, expected: list[str]) -> None:
    package = importlib.import_module(package_name)
    assert sorted(package.__all__) == sorted(expected)
    assert list(package.__all__) == sorted(package.__all__), "__all__ is kept sorted"
    for name in expected:
        assert getattr(package, name, None) is not None, f"{package_name}.{name} is not importable"
        exec(f"from {package_name} import {name}", {})


def test_mediator_exports_exactly_the_contract() -> None:
    """``mediator.__all__`` lists exactly the names of the contract's section 1, each importable."""
    assert_public_api("mediator", MEDIATOR_API)


def test_mediator_errors_share_one_base() -> None:
    """Every public mediator error derives from MediatorError."""
    import mediator

    for name in ("HandlerNotFoundError", "DuplicateHandlerError"):
        assert issubclass(getattr(mediator, name), mediator.MediatorError)


@pytest.mark.parametrize("name", ["InvalidHandlerError", "InvalidMessageError"])
def test_other_mediator_errors_are_reachable_by_module_path(name: str) -> None:
    """Errors outside the contract live in mediator.errors, not in the package namespace."""
    import mediator
    import mediator.errors

    assert issubclass(getattr(mediator.errors, name), mediator.MediatorError)
    assert name not in mediator.__all__


#: Section 2 of the contract: ``from scheduling import (...)``.
SCHEDULING_API = [
    "AttemptRecord",
    "Clock",
    "CommandContext",
    "CommandScheduler",
    "ICommandScheduler",
    "ManualClock",
    "ParentOutcome",  # workflows (0.7)
    "QueueInfo",  # section 5
    "RateLimit",  # section 5
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
    "ScheduledGroup",  # workflows (0.7)
    "SchedulerSettings",
    "SchedulingModule",
    "SystemClock",
    "UnknownParentError",  # workflows (0.7)
    "WaitingForWorker",  # section 5: what list_workers() leaves unclaimed
    "WorkerInfo",  # section 5
]

#: Section 3 of the contract: ``from stores import (...)``.
STORES_API = ["MemoryStore", "RedisStore", "ScheduledCommandStore", "SqlStore"]


def test_scheduling_exports_exactly_the_contract() -> None:
    """``scheduling.__all__`` lists exactly the names of the contract's section 2, each importable."""
    assert_public_api("scheduling", SCHEDULING_API)


def test_stores_exports_exactly_the_contract() -> None:
    """``stores.__all__`` lists exactly the names of the contract's section 3, each importable."""
    assert_public_api("stores", STORES_API)


#: The store contract suite shipped for custom stores (docs/stores.md, "Writing a custom store").
STORES_TESTING_API = [
    "BASE",
    "CancelRunningContract",
    "DependencyContract",
    "EveryFeatureContract",
    "FinishListenerContract",
    "OutcomeCountContract",
    "QueueContract",
    "SearchContract",
    "StoreContract",
    "StoreFactory",
    "at",
    "make_attempt",
    "make_entry",
]


def test_stores_testing_exports_exactly_the_suite_and_its_helpers() -> None:
    """``stores.testing.__all__`` lists the base test classes (the contract and each optional feature's suite), the
    factory type and the helpers, each importable."""
    assert_public_api("stores.testing", STORES_TESTING_API)


def test_icommandscheduler_is_the_same_class() -> None:
    """ICommandScheduler is an alias, not a subclass: one binding serves both names."""
    import scheduling

    assert scheduling.ICommandScheduler is scheduling.CommandScheduler


def test_lifecycle_notifications_share_one_base() -> None:
    """The five lifecycle notifications derive from ScheduledCommandNotification, a mediator Notification."""
    import mediator
    import scheduling

    assert issubclass(scheduling.ScheduledCommandNotification, mediator.Notification)
    for name in ("Completed", "Retrying", "Failed", "Expired", "Cancelled"):
        assert issubclass(getattr(scheduling, f"ScheduledCommand{name}"), scheduling.ScheduledCommandNotification)


def test_importing_stores_first_works() -> None:
    """``import stores`` alone (before scheduling) works: stores do not depend on the scheduling package."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", "import stores; import scheduling; import mediator"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_sync_module_exports_the_sync_scheduler() -> None:
    """Section 6 of the contract: ``from scheduling.sync import SyncScheduler``."""
    assert_public_api("scheduling.sync", ["SyncScheduler"])
