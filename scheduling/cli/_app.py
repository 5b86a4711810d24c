"""Operator commands run inside an application (``--app``): what they change is announced by the application's own
scheduler, to its notification handlers and observers, as the application's calls are.

The application is loaded as ``worker --app`` loads it, and its store is chosen the same way: --store, else
$CQRS_SCHEDULING_STORE, else the application's own store (a memory store, which another process cannot share,
is replaced by the embedded default).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated

import typer
from injector import Injector

from stores.base import ScheduledCommandStore
from stores.default import STORE_ENV

from ._common import DEFAULT_STORE, _refuse_missing_sqlite_file, fail

__all__ = ["AppOption", "run_with_app"]

AppOption = Annotated[
    str | None,
    typer.Option(
        "--app",
        help="Act through this application ('package.module:factory', as for worker): what is cancelled is "
        "announced to its notification handlers (ScheduledCommandCancelled), observers and log.",
        show_default=False,
    ),
]


def run_with_app(
    app_spec: str, url_option: str | None, work: Callable[[ScheduledCommandStore, Injector], Awaitable[int]]
) -> None:
    """Load the application, open its store (see the module docstring), run ``work``, exit with its code. An
    application that does not load exits 2; store errors are one line on stderr (exit 1)."""
    from scheduling._worker import AppLoadError, apply_overrides, load_app
    from stores.errors import StoreError
    from stores.memory import MemoryStore
    from stores.urls import store_from_url

    sys.path.insert(0, os.getcwd())
    try:
        injector = load_app(app_spec)
    except AppLoadError as exc:
        fail(str(exc), 2)
    url = url_option if url_option is not None else os.environ.get(STORE_ENV)
    if url is None and isinstance(injector.get(ScheduledCommandStore), MemoryStore):  # type: ignore[type-abstract]
        url = DEFAULT_STORE

    async def run() -> int:
        store = injector.get(ScheduledCommandStore)  # type: ignore[type-abstract]
        async with store:
            return await work(store, injector)

    try:
        apply_overrides(injector, store=store_from_url(url) if url else None)
        if url:
            _refuse_missing_sqlite_file(url)
        code = asyncio.run(run())
    except (ValueError, StoreError, ImportError) as exc:
        fail(str(exc))
    if code:
        raise typer.Exit(code)
