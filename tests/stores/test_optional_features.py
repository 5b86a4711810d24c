"""What the optional features promise without a store: the contract's defaults refuse dependencies, and queue limits
are validated naming the value. (The suites of the features themselves ship in ``stores.testing`` and run on every
store in ``tests/stores/test_contract.py``.)"""

from __future__ import annotations

from datetime import timedelta

import pytest

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
