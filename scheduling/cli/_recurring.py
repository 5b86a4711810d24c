"""``cqrs-scheduling recurring``: list, pause, resume and remove recurring schedules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from stores.base import ScheduledCommandStore

from ._common import (
    HELP_STYLE,
    JsonOption,
    StoreOption,
    _console,
    _emit_json,
    _run_with_store,
    _when,
)

recurring_app = typer.Typer(
    no_args_is_help=True, help="Recurring schedules: list, pause, resume, remove.", **HELP_STYLE
)

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The schedule's name.")]


@recurring_app.command("list")
def recurring_list(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Every recurring schedule: its timing, state and next occurrence."""
    from scheduling.admin import recurring_list as list_schedules

    async def work(opened: ScheduledCommandStore) -> int:
        listed = await list_schedules(opened)
        if as_json:
            _emit_json(listed.model_dump(mode="json"))
            return 0
        schedules = listed.schedules
        from rich.table import Table

        now = datetime.now(UTC)
        table = Table("name", "type", "when", "misfire", "state", "generation", "next", "last")
        for s in schedules:
            when = f"{s.cron} ({s.timezone})" if s.cron is not None else f"every {timedelta(seconds=s.interval or 0)}"
            table.add_row(
                s.name,
                s.command_type.rsplit(".", 1)[-1],
                when,
                s.misfire_policy,
                "paused" if s.paused else "active",
                str(s.generation),
                _when(s.next_run_at, now),
                _when(s.last_run_at, now),
            )
        console = _console()
        console.print(table)
        console.print(f"{len(schedules)} schedule{'' if len(schedules) == 1 else 's'}")
        return 0

    _run_with_store(store, work)


def _unknown_schedule(name: str, opened: ScheduledCommandStore) -> int:
    typer.echo(f"error: no recurring schedule named {name!r} in {opened.description}", err=True)
    return 1


@recurring_app.command("pause")
def recurring_pause(name: NameArgument, store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Pause a schedule: its pending occurrence is cancelled and no new one is created until resumed."""
    from scheduling.admin import pause_schedule

    async def work(opened: ScheduledCommandStore) -> int:
        paused = await pause_schedule(opened, name, datetime.now(UTC))
        if paused is None:
            return _unknown_schedule(name, opened)
        if as_json:
            _emit_json(paused.model_dump(mode="json"))
        else:
            typer.echo(f"paused {name} (cancelled {len(paused.cancelled)} pending occurrence(s))")
        return 0

    _run_with_store(store, work)


@recurring_app.command("resume")
def recurring_resume(name: NameArgument, store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Resume a paused schedule at its next future occurrence (missed ones are not run)."""
    from scheduling.admin import resume_schedule

    async def work(opened: ScheduledCommandStore) -> int:
        resumed = await resume_schedule(opened, name, datetime.now(UTC))
        if resumed is None:
            return _unknown_schedule(name, opened)
        next_at = resumed.next_run_at.isoformat() if resumed.next_run_at else None
        if as_json:
            _emit_json(resumed.model_dump(mode="json"))
        else:
            typer.echo(f"resumed {name}; next occurrence at {next_at}")
        return 0

    _run_with_store(store, work)


@recurring_app.command("remove")
def recurring_remove(name: NameArgument, store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Delete a schedule and cancel its pending occurrence (finished occurrences stay, for the record)."""
    from scheduling.admin import remove_schedule

    async def work(opened: ScheduledCommandStore) -> int:
        removed = await remove_schedule(opened, name, datetime.now(UTC))
        if removed is None:
            return _unknown_schedule(name, opened)
        if as_json:
            _emit_json(removed.model_dump(mode="json"))
        else:
            typer.echo(f"removed {name} (cancelled {len(removed.cancelled)} pending occurrence(s))")
        return 0

    _run_with_store(store, work)
