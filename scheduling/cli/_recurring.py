"""``cqrs-scheduling recurring``: list, occurrences, run now, pause, resume and remove recurring schedules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sized
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from pydantic import BaseModel

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
    no_args_is_help=True, help="Recurring schedules: list, occurrences, run now, pause, resume, remove.", **HELP_STYLE
)

if TYPE_CHECKING:
    from scheduling.admin import ResumeResult

#: What an action on one schedule returns (printed as JSON with --json).
Result = TypeVar("Result", bound=BaseModel)

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
        table = Table("name", "type", "when", "misfire", "state", "generation", "next", "last", "last outcome")
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
                s.last_outcome or "-",
            )
        console = _console()
        console.print(table)
        console.print(f"{len(schedules)} schedule{'' if len(schedules) == 1 else 's'}")
        return 0

    _run_with_store(store, work)


@recurring_app.command("occurrences")
def recurring_occurrences(
    name: NameArgument,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500, help="How many, newest first.")] = 20,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """A schedule's latest occurrences, newest first, with their status (how each one ended)."""
    from scheduling.admin import schedule_occurrences

    async def work(opened: ScheduledCommandStore) -> int:
        found = await schedule_occurrences(opened, name, limit=limit)
        if found is None:
            return _unknown_schedule(name, opened)
        if as_json:
            _emit_json(found.model_dump(mode="json"))
            return 0
        from rich.table import Table

        now = datetime.now(UTC)
        table = Table("id", "status", "due", "finished", "failed", "last error")
        for entry in found.occurrences:
            failed = f"{entry.retry_count}/{entry.attempts_allowed}"
            error = (entry.error_message or "").splitlines()[0][:60] if entry.error_message else "-"
            table.add_row(
                entry.id,
                entry.status.value,
                _when(entry.scheduled_for, now),
                _when(entry.completed_at, now),
                failed,
                error,
            )
        console = _console()
        console.print(table)
        console.print(
            f"{len(found.occurrences)} occurrence(s) of {name}; last outcome: {found.schedule.last_outcome or '-'}"
        )
        return 0

    _run_with_store(store, work)


@recurring_app.command("run-now")
def recurring_run_now(name: NameArgument, store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Add one occurrence due now, for any worker of the fleet to run; the regular occurrences stay as they are."""
    from scheduling.admin import RunNowResult, run_schedule_now
    from scheduling.audit import Actor, record_action

    async def work(opened: ScheduledCommandStore) -> int:
        now = datetime.now(UTC)
        try:
            result: RunNowResult | None = await run_schedule_now(opened, name, now)
        except ValueError as exc:
            typer.echo(f"error: cannot run {name!r}: {exc}", err=True)
            return 1
        if result is None:
            return _unknown_schedule(name, opened)
        if result.created:
            await record_action(opened, Actor.cli(), "run-now", now=now, entry_ids=[result.id], target=name)
        if as_json:
            _emit_json(result.model_dump(mode="json"))
        else:
            added = "added" if result.created else "already added (asked twice within a second)"
            typer.echo(f"occurrence {result.id} of {name} {added}, due now")
        return 0

    _run_with_store(store, work)


def _unknown_schedule(name: str, opened: ScheduledCommandStore) -> int:
    typer.echo(f"error: no recurring schedule named {name!r} in {opened.description}", err=True)
    return 1


@recurring_app.command("pause")
def recurring_pause(name: NameArgument, store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Pause a schedule: its pending occurrence is cancelled and no new one is created until resumed."""
    from scheduling.admin import pause_schedule

    _act_on_schedule(
        "pause", name, store, as_json, pause_schedule, lambda paused: f"paused {name} ({_cancelled(paused.cancelled)})"
    )


@recurring_app.command("resume")
def recurring_resume(name: NameArgument, store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Resume a paused schedule at its next future occurrence (missed ones are not run)."""
    from scheduling.admin import resume_schedule

    def said(resumed: ResumeResult) -> str:
        next_at = resumed.next_run_at.isoformat() if resumed.next_run_at else None
        return f"resumed {name}; next occurrence at {next_at}"

    _act_on_schedule("resume", name, store, as_json, resume_schedule, said)


@recurring_app.command("remove")
def recurring_remove(name: NameArgument, store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Delete a schedule and cancel its pending occurrence (finished occurrences stay, for the record)."""
    from scheduling.admin import remove_schedule

    _act_on_schedule(
        "remove",
        name,
        store,
        as_json,
        remove_schedule,
        lambda removed: f"removed {name} ({_cancelled(removed.cancelled)})",
    )


def _act_on_schedule(
    verb: str,
    name: str,
    store: str | None,
    as_json: bool,
    action: Callable[[ScheduledCommandStore, str, datetime], Awaitable[Result | None]],
    said: Callable[[Result], str],
) -> None:
    """Run ``action`` on the schedule ``name``; print its result as JSON or as ``said`` puts it. Exit code 1 (and
    the schedules there are) if there is no such schedule. A done action leaves a record ``verb`` in the audit trail."""
    from scheduling.audit import Actor, record_action

    async def work(opened: ScheduledCommandStore) -> int:
        now = datetime.now(UTC)
        result = await action(opened, name, now)
        if result is None:
            return _unknown_schedule(name, opened)
        await record_action(opened, Actor.cli(), verb, now=now, target=name, count=1)
        if as_json:
            _emit_json(result.model_dump(mode="json"))
        else:
            typer.echo(said(result))
        return 0

    _run_with_store(store, work)


def _cancelled(cancelled: Sized) -> str:
    return f"cancelled {len(cancelled)} pending occurrence(s)"
