"""``cqrs-scheduling queue``: list queues, pause, resume and limit one, fleet-wide (stored in the database)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

import typer
from pydantic import ValidationError

from scheduling import admin
from stores.base import ScheduledCommandStore
from stores.queues import QueueLimits, RateLimit

from ._common import HELP_STYLE, JsonOption, StoreOption, _console, _emit_json, _run_with_store

queue_app = typer.Typer(no_args_is_help=True, help="Queues: list, pause, resume, limit (docs/queues.md).", **HELP_STYLE)

QueueArgument = Annotated[str, typer.Argument(metavar="NAME", help="The queue's name.")]


@queue_app.command("list")
def queue_list(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Every queue with waiting or running entries, or paused: depth, running, paused, limits."""

    async def work(opened: ScheduledCommandStore) -> int:
        listed = await admin.queue_list(opened)
        queues = listed.queues
        if as_json:
            _emit_json(listed.model_dump(mode="json"))
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
        await admin.set_queue_paused(opened, name, paused)
        typer.echo(f"{'paused' if paused else 'resumed'} queue {name}")
        return 0

    _run_with_store(store, work)


#: ``--rate``: COUNT/PERIOD, the period a number (1 when left out) and a unit: ``100/1m``, ``50/s``, ``10/500ms``.
_RATE = re.compile(r"(\d+)/(\d*)(ms|s|m|h|d)")
_UNITS = {"ms": timedelta(milliseconds=1), "s": timedelta(seconds=1), "m": timedelta(minutes=1)}
_UNITS |= {"h": timedelta(hours=1), "d": timedelta(days=1)}


def parse_rate(text: str) -> RateLimit:
    """``100/1m`` as ``RateLimit(count=100, per=timedelta(minutes=1))``; a ``BadParameter`` naming the text."""
    match = _RATE.fullmatch(text.strip())
    if match is None:
        raise typer.BadParameter(f"expected COUNT/PERIOD such as 100/1m, 50/s or 10/500ms, got {text!r}")
    count, number, unit = match.groups()
    try:
        return RateLimit(count=int(count), per=int(number or 1) * _UNITS[unit])
    except ValidationError as error:
        raise typer.BadParameter(f"{text!r}: {error.errors()[0]['msg']}") from error


@queue_app.command("limit")
def queue_limit(
    name: QueueArgument,
    max_running: Annotated[
        int | None,
        typer.Option("--max-running", help="Most entries of the queue running at once across the fleet (>= 1)."),
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option("--rate", metavar="COUNT/PERIOD", help="Most starts per period across the fleet: 100/1m, 50/s."),
    ] = None,
    store: StoreOption = None,
) -> None:
    """Set a queue's fleet-wide limits (both: an option left out clears that limit; neither clears both)."""
    try:
        limits = QueueLimits(max_running=max_running, rate=parse_rate(rate) if rate is not None else None)
    except ValidationError as error:
        raise typer.BadParameter(f"{max_running}: {error.errors()[0]['msg']}", param_hint="'--max-running'") from error

    async def work(opened: ScheduledCommandStore) -> int:
        await admin.limit_queue(opened, name, limits)
        shown = [f"max running {max_running}"] if max_running is not None else []
        shown += [f"rate {rate}"] if rate is not None else []
        typer.echo(f"limited queue {name}: {', '.join(shown)}" if shown else f"cleared the limits of queue {name}")
        return 0

    _run_with_store(store, work)
