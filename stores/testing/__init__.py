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

The optional features have suites of their own, each a class to add to the bases of your test class when your
store has the feature (they share ``StoreContract``'s ``store`` fixture and your ``store_factory``):

- ``QueueContract``: queues, routing, pausing, locks, queue limits and the routed claim's order;
- ``DependencyContract``: dependencies (``add_dependants``) and the dependants-cancelled listener; its tests skip
  a store whose ``supports_dependencies`` is False;
- ``CancelRunningContract``: ``request_cancel`` and ``cancel_claimed``;
- ``FinishListenerContract``: the finish listeners, in this process and (on a ``durable`` store) from another
  store object on the same data;
- ``SearchContract``: ``EntryFilter`` searches and the bounded count (a store whose ``supports_search`` is False
  must refuse searches with ``UnsupportedFeatureError``);
- ``OutcomeCountContract``: ``count_outcomes`` (``keeps_outcome_counts`` says whether a purge keeps settled hours)
  and ``list_occurrences``.

``EveryFeatureContract`` is all of them and ``StoreContract`` together::

    class TestMyStore(StoreContract, QueueContract, SearchContract):
        ...

The tests of a suite branch only on those declarations (``durable``, ``supports_dependencies``,
``supports_search``, ``keeps_outcome_counts``), never on a store's class.

It needs pytest, pytest-asyncio (``asyncio_mode = "auto"``) and hypothesis: ``pip install
"cqrs-scheduling[testing]"``. The project's own stores run these very suites (``tests/stores/test_contract.py``).
``docs/stores.md`` ("Writing a custom store") says what a store implements.

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
    _cancel_running,
    _claim_order,
    _claims,
    _concurrent_add,
    _dependants_cancelled,
    _dependencies,
    _finish_listeners,
    _outcome_counts,
    _outcomes,
    _purge,
    _queries,
    _queue_limits,
    _queues,
    _reads,
    _schedules,
    _search,
    _status_counts,
    _streamed_add,
    _workers,
)
from ._helpers import BASE, StoreFactory, at, make_attempt, make_entry

__all__ = [
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
    _streamed_add,
    _purge,
    _status_counts,
)


class _Contract:
    """What every suite shares: the ``store`` fixture, built with the subclass's ``store_factory``."""

    @pytest.fixture
    async def store(self, store_factory: StoreFactory, tmp_path: Path) -> AsyncIterator[ScheduledCommandStore]:
        """A fresh, empty, opened store; closed after the test."""
        async with store_factory(tmp_path) as opened:
            yield opened


class StoreContract(_Contract):
    """Every test of the store contract, as the methods of a base test class: subclass it and define a
    ``store_factory`` fixture (see the module's docstring). A test takes the ``store`` fixture (an opened, empty
    store) or, to open more stores on the same data, ``store_factory`` and pytest's ``tmp_path``.
    """


class QueueContract(_Contract):
    """Queues, routing, pausing, locks and queue limits (``QueueStore``), and the routed claim's order.

    .. versionadded:: 0.8
    """

    @pytest.fixture
    def fleet_store(self, store: ScheduledCommandStore) -> ScheduledCommandStore:
        """The store under test."""
        return store


class DependencyContract(_Contract):
    """Dependencies (``DependencyStore``) and the dependants-cancelled listener; skipped for a store whose
    ``supports_dependencies`` is False (it inherits the refusals).

    .. versionadded:: 0.8
    """

    @pytest.fixture
    def workflow_store(self, store: ScheduledCommandStore) -> ScheduledCommandStore:
        """The store under test, when it keeps dependencies."""
        if not store.supports_dependencies:
            pytest.skip(f"{store.description} cannot keep dependencies (supports_dependencies is False)")
        return store


class CancelRunningContract(_Contract):
    """Cancelling a running entry: ``request_cancel`` and ``cancel_claimed``.

    .. versionadded:: 0.8
    """


class FinishListenerContract(_Contract):
    """The finish listeners (``add_finish_listener``), and on a ``durable`` store the finishes another store object
    on the same data hears.

    .. versionadded:: 0.8
    """


class SearchContract(_Contract):
    """Searching entries (``EntryFilter``) and the bounded count; a store whose ``supports_search`` is False is
    checked to refuse searches.

    .. versionadded:: 0.8
    """


class OutcomeCountContract(_Contract):
    """Outcomes over time (``count_outcomes``) and the latest occurrences of a schedule (``list_occurrences``).

    .. versionadded:: 0.8
    """


class EveryFeatureContract(
    StoreContract,
    QueueContract,
    DependencyContract,
    CancelRunningContract,
    FinishListenerContract,
    SearchContract,
    OutcomeCountContract,
):
    """The store contract and every optional suite, for a store with every feature (as this library's stores).

    .. versionadded:: 0.8
    """


#: Where each contract test comes from: a name used twice, even by two suites, would hide one of them in a class
#: that combines the suites.
_ADDED: dict[str, str] = {}


def _add_tests(contract: type, suites: tuple[ModuleType, ...]) -> None:
    """Give ``contract`` every ``test_*`` function of ``suites``, as a static method (pytest resolves its fixtures
    by the function's own parameters, and keeps its marks)."""
    for suite in suites:
        for name, test in vars(suite).items():
            if name.startswith("test_") and inspect.isfunction(test) and test.__module__ == suite.__name__:
                if name in _ADDED:
                    raise RuntimeError(
                        f"two contract tests are named {name!r} (in {_ADDED[name]} and {suite.__name__})"
                    )
                _ADDED[name] = suite.__name__
                setattr(contract, name, staticmethod(test))


_add_tests(StoreContract, _SUITES)
_add_tests(QueueContract, (_queues, _queue_limits, _claim_order))
_add_tests(DependencyContract, (_dependencies, _dependants_cancelled))
_add_tests(CancelRunningContract, (_cancel_running,))
_add_tests(FinishListenerContract, (_finish_listeners,))
_add_tests(SearchContract, (_search,))
_add_tests(OutcomeCountContract, (_outcome_counts,))
