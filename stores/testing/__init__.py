"""The store contract suite, for your own ``ScheduledCommandStore``: the tests every store of this library passes.

Subclass ``StoreContract`` in a pytest module (name the subclass ``Test...``) and give it a ``store_factory``
fixture: a callable that gets a fresh, empty directory and returns an unopened, empty store (it may keep files in
the directory). Stores built for one directory must share their data when the store is durable (an SQLite file, a
database): a few tests open a second store on the same data. ``StoreContract`` opens each store with ``async with``
and closes it after the test::

    import pytest
    from stores.testing import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store_factory(self):
            return lambda directory: MyStore(directory / "data")

It needs pytest, pytest-asyncio (``asyncio_mode = "auto"``) and hypothesis: ``pip install
"cqrs-scheduling[testing]"``. The project's own stores run this very suite (``tests/stores/test_contract.py``).
The suites of the optional features (queues, dependencies, cancelling running entries, searches) are not part of it
yet. ``docs/stores.md`` ("Writing a custom store") says what a store implements.

.. versionadded:: 0.8
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest

from stores.base import ScheduledCommandStore

from . import (
    _audit,
    _claims,
    _concurrent_add,
    _outcomes,
    _purge,
    _queries,
    _reads,
    _schedules,
    _status_counts,
    _workers,
)
from ._helpers import BASE, StoreFactory, at, make_attempt, make_entry

__all__ = ["BASE", "StoreContract", "StoreFactory", "at", "make_attempt", "make_entry"]

#: The modules of the suite, each one part of the contract.
_SUITES: tuple[ModuleType, ...] = (
    _claims,
    _outcomes,
    _reads,
    _queries,
    _schedules,
    _audit,
    _workers,
    _concurrent_add,
    _purge,
    _status_counts,
)


class StoreContract:
    """Every test of the store contract, as the methods of a base test class: subclass it and define a
    ``store_factory`` fixture (see the module's docstring). A test takes the ``store`` fixture (an opened, empty
    store) or, to open more stores on the same data, ``store_factory`` and pytest's ``tmp_path``.
    """

    @pytest.fixture
    async def store(self, store_factory: StoreFactory, tmp_path: Path) -> AsyncIterator[ScheduledCommandStore]:
        """A fresh, empty, opened store; closed after the test."""
        async with store_factory(tmp_path) as opened:
            yield opened


def _add_tests(contract: type, suites: tuple[ModuleType, ...]) -> None:
    """Give ``contract`` every ``test_*`` function of ``suites``, as a static method (pytest resolves its fixtures
    by the function's own parameters, and keeps its marks)."""
    for suite in suites:
        for name, test in vars(suite).items():
            if name.startswith("test_") and inspect.isfunction(test) and test.__module__ == suite.__name__:
                if hasattr(contract, name):
                    raise RuntimeError(f"two contract tests are named {name!r} (the second in {suite.__name__})")
                setattr(contract, name, staticmethod(test))


_add_tests(StoreContract, _SUITES)
