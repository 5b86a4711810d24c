"""What the optional features promise without a store: the contract's defaults refuse dependencies, and queue limits
are validated naming the value. (The suites of the features themselves ship in ``stores.testing`` and run on every
store in ``tests/stores/test_contract.py``.)"""

from __future__ import annotations

from datetime import timedelta

import pytest

from stores import ScheduledCommandStore
from stores._dependencies_contract import DependencyStore
from stores.dependencies import Dependency
from stores.errors import UnsupportedFeatureError
from stores.queues import QueueLimits, RateLimit
from stores.testing._helpers import BASE, LEASE, make_entry


async def test_a_store_without_them_refuses_them() -> None:
    """The contract's default (a store that cannot keep dependencies) refuses them, naming the feature."""
    child = make_entry()
    with pytest.raises(UnsupportedFeatureError, match="dependencies"):
        await DependencyStore().add_dependants([child], {child.id: Dependency(("parent",))})


def test_limits_are_validated_naming_the_value() -> None:
    with pytest.raises(ValueError, match="input_value=0"):
        QueueLimits(max_running=0)
    with pytest.raises(ValueError, match="per must be a positive duration"):
        RateLimit(count=1, per=timedelta(0))
    assert QueueLimits().allowance(running=99, started=99) is None
    assert QueueLimits(max_running=3, rate=RateLimit(count=5, per=BASE - BASE + LEASE)).allowance(1, 4) == 1


def _store_class(name: str, **methods: object) -> type[ScheduledCommandStore]:
    """A store class implementing every abstract method (doing nothing) plus ``methods``."""

    async def nothing(self: object, *args: object, **kwargs: object) -> None:
        return None

    namespace: dict[str, object] = dict.fromkeys(ScheduledCommandStore.__abstractmethods__, nothing)
    namespace.update(methods)
    return type(name, (ScheduledCommandStore,), namespace)


def test_a_store_implementing_neither_a_hook_nor_its_older_methods_is_refused_at_definition() -> None:
    """The claim-ending, listing and purging hooks are not abstract (stores written before 0.8 override the older
    methods instead): a store with neither is refused when its class is defined, not at its first outcome."""

    async def implemented(self: object, *args: object, **kwargs: object) -> None:
        return None

    hooks = {"end_claim": implemented, "list_matching": implemented, "purge_finished": implemented}
    _store_class("Complete", **hooks)  # the hooks: fine
    older = dict.fromkeys(("complete", "retry_later", "dead_letter", "expire", "release"), implemented)
    _store_class("Older", **older, list_entries=implemented, purge=implemented)  # as before 0.8: fine
    with pytest.raises(TypeError, match=r"Lazy implements neither end_claim\(\).*implement end_claim\(\)"):
        _store_class("Lazy", list_matching=implemented, purge_finished=implemented)
    half = {name: method for name, method in older.items() if name != "release"}
    with pytest.raises(TypeError, match=r"Half implements neither end_claim\(\).*\(or, as before 0.8, release\)"):
        _store_class("Half", **half, list_matching=implemented, purge_finished=implemented)
