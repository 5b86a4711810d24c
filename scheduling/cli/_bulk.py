"""The search options of ``list`` and ``bulk``, and ``bulk``: requeue, cancel or dismiss the entries of a search
(or of ids given), in audited batches, after confirming how many.

Times are ISO 8601 with a UTC offset (``2026-03-01T12:00:00Z``); ``--*-after`` includes the instant, ``--*-before``
excludes it.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated, Literal

import typer
from injector import Injector

from stores.base import ScheduledCommandStore
from stores.entries import ScheduledCommandStatus
from stores.filters import EntryFilter

from ._app import AppOption, run_with_app
from ._common import JsonOption, StoreOption, _console, _emit_json, _run_with_store, fail

__all__ = ["SearchOptions", "bulk", "search_filter"]


def _time_option(help_text: str) -> object:
    return typer.Option(help=help_text + " (ISO 8601 with offset, e.g. 2026-03-01T12:00:00Z).")


IdPrefixOption = Annotated[str | None, typer.Option("--id-prefix", help="Only ids starting with this (a short id).")]
ErrorOption = Annotated[
    str | None, typer.Option("--error", help="Only entries whose last error contains this, ignoring case.")
]
CreatedAfter = Annotated[str | None, _time_option("Created at or after")]
CreatedBefore = Annotated[str | None, _time_option("Created before")]
DueAfter = Annotated[str | None, _time_option("Due at or after")]
DueBefore = Annotated[str | None, _time_option("Due before")]
FinishedAfter = Annotated[str | None, _time_option("Finished at or after")]
FinishedBefore = Annotated[str | None, _time_option("Finished before")]

#: The search options' names, as ``parse_filter`` names the fields.
SearchOptions = dict[str, str | None]


def search_filter(fields: SearchOptions) -> EntryFilter:
    """The filter of the search options; a bad value exits with code 2 and one line naming it."""
    from scheduling.search import parse_filter

    try:
        return parse_filter(fields)
    except ValueError as exc:
        fail(str(exc), 2)


def bulk(
    action: Annotated[
        Literal["requeue", "cancel", "dismiss"],
        typer.Argument(help="requeue or dismiss FAILED entries, or cancel PENDING ones."),
    ],
    entry_ids: Annotated[
        list[str] | None, typer.Option("--id", metavar="ID", help="Act on these entries (full ids; repeatable).")
    ] = None,
    status_filter: Annotated[
        ScheduledCommandStatus | None,
        typer.Option("--status", case_sensitive=False, help="Must be the action's status when given."),
    ] = None,
    command_type: Annotated[
        str | None,
        typer.Option("--type", help="Only this command type: module.Name, or the class name alone when unambiguous."),
    ] = None,
    correlation_id: Annotated[str | None, typer.Option(help="Only entries of this correlation id.")] = None,
    id_prefix: IdPrefixOption = None,
    error: ErrorOption = None,
    created_after: CreatedAfter = None,
    created_before: CreatedBefore = None,
    due_after: DueAfter = None,
    due_before: DueBefore = None,
    finished_after: FinishedAfter = None,
    finished_before: FinishedBefore = None,
    expected: Annotated[
        int | None,
        typer.Option("--expected", min=0, help="Act only if at most this many match (for scripts; implies --yes)."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what the action would take.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Act without asking for confirmation.")] = False,
    app_spec: AppOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Requeue or dismiss FAILED entries, or cancel PENDING ones: those matching the search options, or those given
    with --id. States how many and asks first (on a terminal; elsewhere it needs --yes or --expected); runs in
    batches of 200, each recorded in the audit trail. With --app, each cancellation (and that of the dependants it
    cancels) is announced to the application's handlers. Exit code 1 if nothing was done, 2 when not confirmed."""
    fields: SearchOptions = {
        "status": status_filter.value if status_filter is not None else None,
        "correlation_id": correlation_id,
        "id_prefix": id_prefix,
        "error": error,
        "created_after": created_after,
        "created_before": created_before,
        "due_after": due_after,
        "due_before": due_before,
        "finished_after": finished_after,
        "finished_before": finished_before,
    }
    searching = command_type is not None or any(value is not None for value in fields.values())
    if entry_ids and searching:
        fail("give --id or search options, not both", 2)
    where = search_filter(fields)

    from scheduling.audit import Actor
    from scheduling.bulk import SOURCE_STATUS, BulkCountError, BulkResult, bulk_by_filter, bulk_by_ids, scoped

    from ._lookup import resolve_command_type

    try:
        scoped(action, where)
    except ValueError as exc:
        fail(str(exc), 2)

    async def work(opened: ScheduledCommandStore, app: Injector | None = None) -> int:
        from rich.progress import Progress

        from scheduling.scheduler import CommandScheduler

        scheduler = app.get(CommandScheduler) if app is not None and action == "cancel" else None
        console = _console()
        actor = Actor.cli()
        clock = lambda: datetime.now(UTC)  # noqa: E731 - a clock, read per batch
        if entry_ids:
            count, what = len(entry_ids), f"{len(entry_ids)} given entr{'y' if len(entry_ids) == 1 else 'ies'}"
        else:
            nonlocal where
            if command_type is not None:
                resolved = await resolve_command_type(opened, command_type)
                where = where.model_copy(update={"command_type": resolved})
            preview = await bulk_by_filter(opened, action, where, clock=clock, actor=actor, dry_run=True)
            count = preview.matched
            what = f"{count:,} {SOURCE_STATUS[action].value} entr{'y' if count == 1 else 'ies'} ({where.describe()})"
        if dry_run or count == 0:
            if as_json:
                _emit_json(BulkResult(action=action, target=where.describe(), matched=count, dry_run=True).model_dump())
            else:
                typer.echo(f"would {action} {what}" if count else f"nothing to {action}: no entry matches")
            return 0 if dry_run else 1
        if not _confirmed(action, what, yes=yes or expected is not None):
            return 2
        show = console.is_terminal and not as_json
        with Progress(console=console, disable=not show, transient=True) as progress:
            task = progress.add_task(f"{action}", total=count)

            def moved(result: BulkResult) -> None:
                progress.update(task, completed=len(result.done) + len(result.refused))

            try:
                if entry_ids:
                    result = await bulk_by_ids(
                        opened, action, entry_ids, clock=clock, actor=actor, on_progress=moved, scheduler=scheduler
                    )
                else:
                    limit = count if expected is None else expected
                    result = await bulk_by_filter(
                        opened,
                        action,
                        where,
                        clock=clock,
                        actor=actor,
                        expected=limit,
                        on_progress=moved,
                        scheduler=scheduler,
                    )
            except (BulkCountError, ValueError) as exc:
                typer.echo(f"error: {exc}", err=True)
                return 2
        if as_json:
            _emit_json(result.model_dump(mode="json"))
        else:
            left = f"; {len(result.refused)} left alone (not {SOURCE_STATUS[action].value})" if result.refused else ""
            typer.echo(f"{_past(action)} {len(result.done)} of {what} in {result.batches} batch(es){left}")
        return 0 if result.done else 1

    if app_spec is not None:
        if action != "cancel":
            fail(f"--app announces cancellations; bulk {action} does not take it", 2)
        run_with_app(app_spec, store, work)
    else:
        _run_with_store(store, work)


def _past(action: str) -> str:
    return {"requeue": "requeued", "cancel": "cancelled", "dismiss": "dismissed"}[action]


def _confirmed(action: str, what: str, *, yes: bool) -> bool:
    """Whether to go on: --yes, or the operator's answer on a terminal (no terminal: refused, one line on stderr)."""
    if yes:
        return True
    if not sys.stdin.isatty():
        typer.echo(f"error: bulk {action} would {action} {what}: confirm with --yes", err=True)
        return False
    if typer.confirm(f"{action.capitalize()} {what}?", default=False, err=True):
        return True
    typer.echo("nothing done", err=True)
    return False
