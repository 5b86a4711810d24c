"""Fixtures for scheduler and service tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from scheduling_app import App, make_app


@pytest.fixture
def app() -> App:
    return make_app()


@pytest.fixture
async def running_app() -> AsyncIterator[App]:
    app = make_app()
    async with app.service:
        yield app
