"""The ``cqrs-scheduling`` command line (also ``python -m scheduling``).

Built on Typer: typed options, generated ``--help``, and Click's exit-code conventions (2 for usage errors).
"""

from __future__ import annotations

import asyncio
import os
import sys
from enum import StrEnum
from typing import Annotated, NoReturn

import typer

#: The store when neither --store nor $CQRS_SCHEDULING_STORE says otherwise: the embedded default.
DEFAULT_STORE = "sqlite:///scheduled-commands.db"
STORE_ENV = "CQRS_SCHEDULING_STORE"

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help=f"Store URL (sqlite:///path or postgresql+psycopg://...). Default: ${STORE_ENV}, then {DEFAULT_STORE}.",
        show_default=False,
    ),
]


class LogFormat(StrEnum):
    text = "text"
    json = "json"


def store_url(option: str | None) -> str:
    """The store URL in force: --store, then $CQRS_SCHEDULING_STORE, then the SQLite default."""
    return option or os.environ.get(STORE_ENV) or DEFAULT_STORE


def fail(message: str, code: int = 1) -> NoReturn:
    """One clear line on stderr and a non-zero exit; never a traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


__all__ = ["app", "main"]

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Scheduled commands for a CQRS mediator: run the demo, workers and operator commands.",
)


@app.callback()
def _root() -> None:
    """Scheduled commands for a CQRS mediator."""


@app.command()
def demo(store: StoreOption = None) -> None:
    """Run a few-second showcase: delays, priorities, retries, a dead letter, an expiry and a cancellation.

    It runs on the embedded default store (a SQLite file), so a second run shows the first run's history.
    """
    from stores.errors import StoreError
    from stores.sql import SqlStore

    from .demo import run_demo

    try:
        asyncio.run(run_demo(SqlStore(store_url(store))))
    except (ValueError, StoreError) as exc:
        fail(str(exc))


@app.command()
def worker(
    app_spec: Annotated[
        str,
        typer.Option("--app", help="The application: 'package.module:factory', a factory returning its Injector."),
    ],
    store: StoreOption = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Commands run at once (settings: max_concurrency).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Entries claimed per round trip.")] = None,
    polling_interval: Annotated[
        float | None, typer.Option(min=0.001, help="Longest sleep between polls, in seconds.")
    ] = None,
    worker_id: Annotated[
        str | None, typer.Option(help="Name in leases and the audit trail (default host:pid:random).")
    ] = None,
    log_format: Annotated[LogFormat, typer.Option(help="Log lines as text or JSON, on stderr.")] = LogFormat.text,
) -> None:
    """Run the scheduled-command worker of an application until SIGINT or SIGTERM.

    The first signal stops it gracefully (running commands get shutdown_grace, the rest go back to PENDING);
    a second one stops it at once.
    """
    from stores.errors import StoreError
    from stores.sql import SqlStore

    from .worker import AppLoadError, apply_overrides, configure_logging, load_app, run_worker

    configure_logging(log_format.value)
    sys.path.insert(0, os.getcwd())
    try:
        injector = load_app(app_spec)
    except AppLoadError as exc:
        fail(str(exc), 2)
    url = store if store is not None else os.environ.get(STORE_ENV)
    try:
        sql_store = SqlStore(url) if url else None
        apply_overrides(
            injector,
            store=sql_store,
            concurrency=concurrency,
            batch_size=batch_size,
            polling_interval=polling_interval,
            worker_id=worker_id,
        )
        asyncio.run(run_worker(injector))
    except (ValueError, StoreError) as exc:
        fail(str(exc))


def main() -> None:
    """Console-script entry point."""
    app()
