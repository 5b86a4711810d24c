"""The ``cqrs-scheduling`` command line (also ``python -m scheduling``): operator tooling over the engine.

Built on Typer: typed options, generated ``--help``, and Click's exit-code conventions (2 for usage errors). One
module per command group, all private; this module is the table of contents (the order here is the order of
``--help``):

- ``_common``: the --store and --json options, opening the store, one-line failures, tables and JSON;
- ``_worker``: ``worker`` (the runner it starts is ``scheduling._worker``);
- ``_entries``: ``status``, ``list``, ``show``, ``cancel``, ``requeue``, ``purge``;
- ``_workers``: ``workers`` (the worker registry);
- ``_outcomes``: ``outcomes`` (outcomes over time);
- ``_recurring``: the ``recurring`` group;
- ``_queues``: the ``queue`` group;
- ``_dashboard``: ``dashboard`` (its socket and signal plumbing is ``scheduling.web._serve``).

``main`` is the console-script entry point.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from ._bulk import bulk
from ._common import HELP_STYLE, StoreOption, fail, store_url
from ._dashboard import dashboard
from ._entries import audit, cancel, list_entries, purge, requeue, show, status
from ._outcomes import outcomes
from ._queues import queue_app
from ._recurring import recurring_app
from ._worker import worker
from ._workers import workers

__all__ = ["app", "main"]

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Scheduled commands for a CQRS mediator: run the demo, workers and operator commands.",
    **HELP_STYLE,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"cqrs-scheduling {version('cqrs-scheduling')}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Scheduled commands for a CQRS mediator."""


@app.command()
def demo(store: StoreOption = None) -> None:
    """Run a few-second showcase: delays, priorities, retries, a dead letter, an expiry and a cancellation.

    It runs on the embedded default store (a SQLite file), so a second run shows the first run's history.
    """
    from scheduling.demo import run_demo
    from stores.errors import StoreError
    from stores.urls import store_from_url

    try:
        asyncio.run(run_demo(store_from_url(store_url(store))))
    except (ValueError, StoreError, ImportError) as exc:
        fail(str(exc))


@app.command()
def migrate(store: StoreOption = None) -> None:
    """Bring the store's schema to this version now (opening a store does it too, under a lock)."""
    from stores.errors import StoreError
    from stores.sql import SqlStore

    async def run(sql_store: SqlStore) -> tuple[int | None, int]:
        try:
            return await sql_store.migrate()
        finally:
            await sql_store.close()

    try:
        found, current = asyncio.run(run(SqlStore(store_url(store))))
    except (ValueError, StoreError) as exc:
        fail(str(exc))
    if found is None:
        typer.echo(f"created schema version {current}")
    elif found < current:
        typer.echo(f"migrated schema version {found} to {current}")
    else:
        typer.echo(f"schema version {current} is current")


app.command()(worker)
app.command()(status)
app.command("list")(list_entries)
app.command()(show)
app.command()(cancel)
app.command()(requeue)
app.command()(bulk)
app.command()(purge)
app.command()(audit)
app.command()(outcomes)
app.command()(workers)
app.add_typer(recurring_app, name="recurring")
app.add_typer(queue_app, name="queue")
app.command()(dashboard)


def main() -> None:
    """Console-script entry point."""
    app()
