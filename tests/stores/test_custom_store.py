"""A custom store runs the shipped contract suite (``stores.testing``) the way a user's project would: a subclass of
``StoreContract`` with its own ``store_factory`` fixture. The store here is tiny, a MemoryStore that counts the
claims it answers, so the suite's every test runs against a class the library does not know."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from stores import MemoryStore
from stores.entries import ScheduledCommandEntry
from stores.queues import Route
from stores.testing import DependencyContract, QueueContract, SearchContract, StoreContract, StoreFactory


class CountingStore(MemoryStore):
    """A custom store: MemoryStore, counting the claims it answers."""

    def __init__(self) -> None:
        super().__init__()
        self.claims = 0

    async def claim_due(
        self, *, now: datetime, limit: int, worker_id: str, lease_duration: timedelta, route: Route | None = None
    ) -> list[ScheduledCommandEntry]:
        self.claims += 1
        return await super().claim_due(
            now=now, limit=limit, worker_id=worker_id, lease_duration=lease_duration, route=route
        )


class TestCountingStore(StoreContract):
    @pytest.fixture
    def store_factory(self) -> StoreFactory:
        return lambda directory: CountingStore()


def test_the_suite_is_every_contract_test() -> None:
    """The subclass carries the suite's tests, each once, and the ``store`` fixture."""
    tests = [name for name in dir(TestCountingStore) if name.startswith("test_")]
    assert len(tests) > 120
    assert "test_complete" in tests
    assert "test_claim_order_property" in tests
    assert "test_the_registry_is_shared_by_stores_on_one_database" in tests
    # The optional features' suites are opt-in: not part of StoreContract.
    for optional in (QueueContract, DependencyContract, SearchContract):
        assert not any(hasattr(TestCountingStore, name) for name in dir(optional) if name.startswith("test_"))
