"""Fixtures of the command-line tests.

- ``populated``: a SQLite file or a PostgreSQL database (parametrized) holding one entry in each interesting state
  (see ``cli_support.populate``), as its URL and the entries' ids by role.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_support import populate


@pytest.fixture(params=["sqlite", "postgresql"])
def populated(
    request: pytest.FixtureRequest, tmp_path: Path, new_postgres_database: Callable[[str, str], str]
) -> tuple[str, dict[str, str]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'cli.db'}"
    else:
        url = new_postgres_database(request.getfixturevalue("postgres_url"), "cli")
    return url, asyncio.run(populate(url))
