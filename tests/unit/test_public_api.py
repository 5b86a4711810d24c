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
