"""``cqrs-scheduling queue``: list queues, pause and resume one, fleet-wide (stored in the database)."""

from __future__ import annotations

from typing import Annotated

import typer

from stores.base import ScheduledCommandStore

from ._common import HELP_STYLE, JsonOption, StoreOption, _console, _emit_json, _run_with_store

queue_app = typer.Typer(no_args_is_help=True, help="Queues: list, pause, resume (docs/queues.md).", **HELP_STYLE)

QueueArgument = Annotated[str, typer.Argument(metavar="NAME", help="The queue's name.")]


@queue_app.command("list")
def queue_list(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Every queue with waiting or running entries, or paused: depth, running, paused, limits."""

    async def work(opened: ScheduledCommandStore) -> int:
        queues = await opened.list_queues()
        if as_json:
            _emit_json({"queues": [queue.model_dump(mode="json") for queue in queues]})
            return 0
        from rich.table import Table

        table = Table("queue", "state", "depth (PENDING)", "running", "max running", "rate")
        for queue in queues:
            rate = f"{queue.rate.count} per {queue.rate.per}" if queue.rate is not None else "-"
            table.add_row(
                queue.name,
                "paused" if queue.paused else "active",
                str(queue.depth),
                str(queue.running),
                str(queue.max_running) if queue.max_running is not None else "-",
                rate,
            )
        console = _console()
        console.print(table)
        console.print(f"{len(queues)} queue{'' if len(queues) == 1 else 's'}")
        return 0

    _run_with_store(store, work)


@queue_app.command("pause")
def queue_pause(name: QueueArgument, store: StoreOption = None) -> None:
    """Pause a queue for every worker: its entries are not claimed until resumed; running ones finish."""
    _set_paused(name, True, store)


@queue_app.command("resume")
def queue_resume(name: QueueArgument, store: StoreOption = None) -> None:
    """Resume a paused queue: workers claim its due entries again at once."""
    _set_paused(name, False, store)


def _set_paused(name: str, paused: bool, store: str | None) -> None:
    async def work(opened: ScheduledCommandStore) -> int:
        await opened.set_queue_paused(name, paused)
        typer.echo(f"{'paused' if paused else 'resumed'} queue {name}")
        return 0

    _run_with_store(store, work)
