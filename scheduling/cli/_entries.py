"""The operator commands on entries: status, list, show, cancel, requeue, purge, audit.

Cancel, requeue and purge leave one record each in the audit trail (``scheduling.audit``), as ``user@host``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from stores.base import ScheduledCommandStore
from stores.entries import TERMINAL_STATUSES, ScheduledCommandStatus
from stores.errors import UnsupportedFeatureError
from stores.queues import DEFAULT_QUEUE

from ._bulk import (
    CreatedAfter,
    CreatedBefore,
    DueAfter,
    DueBefore,
    ErrorOption,
    FinishedAfter,
    FinishedBefore,
    IdPrefixOption,
    search_filter,
)

if TYPE_CHECKING:
    from injector import Injector
    from rich.console import Console

    from scheduling._entry_detail import EntryDetail, Relative

from ._app import AppOption, run_with_app
from ._common import (
    JsonOption,
    StoreOption,
    _console,
    _emit_json,
    _explain_refusal,
    _run_with_store,
    _when,
    fail,
)

#: An entry named on the command line: its id, or the first characters of it.
EntryIdArgument = Annotated[str, typer.Argument(metavar="ID", help="The entry's id, or its first characters.")]


def status(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Counts per status, the next due time, the oldest overdue entry and its lag, stuck entries, workers per state,
    dead letters per type."""
    from scheduling.admin import overview

    async def work(opened: ScheduledCommandStore) -> int:
        report = await overview(opened, datetime.now(UTC))
        if as_json:
            _emit_json(report.model_dump(mode="json"))
            return 0
        from rich.table import Table

        console = _console()
        console.print(f"Store: {report.store}")
        counts = Table(title=None, show_header=True)
        for name in report.counts:
            counts.add_column(name, justify="right")
        exact = report.counts_exact
        counts.add_row(*(str(n) if exact.get(name, True) else f"about {n}" for name, n in report.counts.items()))
        console.print(counts)
        console.print(f"Next due:       {_when(report.next_due_at, report.now)}")
        if report.oldest_overdue_at is not None and report.oldest_overdue_lag_seconds is not None:
            console.print(f"Oldest overdue: {_when(report.oldest_overdue_at, report.now)}")
        if report.stuck:
            console.print(
                f"Stuck:          {report.stuck} PROCESSING under an expired lease (worker gone; a live worker "
                "recovers them)"
            )
        console.print("Workers:        " + ", ".join(f"{n} {state}" for state, n in report.workers.items()))
        finished = ", ".join(f"{n} {status}" for status, n in report.throughput.totals.items() if n) or "none"
        console.print(f"Finished in the last hour: {finished}")
        for queue, by_type in report.waiting_for_worker_by_queue.items():
            where = "" if queue == DEFAULT_QUEUE else f" in queue {queue}"
            for command_type, waiting in by_type.items():
                console.print(f"{waiting} waiting for a worker that handles {command_type}{where}")
        if report.dead_letters_by_type:
            letters = Table("command type", "dead letters (FAILED)", title="Dead letters")
            for command_type, count in report.dead_letters_by_type.items():
                letters.add_row(command_type, str(count))
            console.print(letters)
        return 0

    _run_with_store(store, work)


def list_entries(
    store: StoreOption = None,
    status_filter: Annotated[
        ScheduledCommandStatus | None,
        typer.Option("--status", case_sensitive=False, help="Only entries in this status (any case)."),
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
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Entries per page.")] = 50,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many (the next page's offset is printed).")] = 0,
    as_json: JsonOption = False,
) -> None:
    """List entries, newest first, with filters (search by id prefix, error text, time ranges), paging and how many
    match."""
    from scheduling.admin import list_page

    from ._lookup import resolve_command_type

    where = search_filter(
        {
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
    )

    async def work(opened: ScheduledCommandStore) -> int:
        wanted = await resolve_command_type(opened, command_type) if command_type is not None else None
        try:
            page = await list_page(opened, where=where, command_type=wanted, limit=limit, offset=offset)
        except UnsupportedFeatureError as exc:
            typer.echo(f"error: {exc}", err=True)
            return 2
        if as_json:
            _emit_json(page.model_dump(mode="json"))
            return 0
        from rich.table import Table

        now = datetime.now(UTC)
        table = Table("id", "type", "status", "priority", "due", "failed", "last error")
        for entry in page.entries:
            table.add_row(
                entry.id,
                entry.command_type.rsplit(".", 1)[-1],
                entry.status.value,
                str(entry.priority),
                _when(entry.scheduled_for, now),
                # Failed attempts of those allowed: a dead letter with max_retries 2 reads 3/3, not "retries 3/2".
                f"{entry.retry_count}/{entry.max_retries + 1}",
                (entry.error_message or "")[:60],
            )
        console = _console()
        console.print(table)
        for row in page.unreadable:  # shown as corrupt, one line each; the readable entries are listed above
            console.print(f"corrupt row {row.seq} (id {row.id or '?'}): {row.message}", markup=False)
        more = f"; next page: --offset {page.next_offset}" if page.next_offset is not None else ""
        noun = "entry" if len(page.entries) == 1 else "entries"
        matching = "" if page.total is None else f" of {'more than ' if not page.total_exact else ''}{page.total:,}"
        console.print(f"{len(page.entries)} {noun}{matching} from offset {page.offset}{more}")
        return 0

    _run_with_store(store, work)


def show(entry_id: EntryIdArgument, store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Every field of one entry, its payload pretty-printed, and its attempts with their errors."""
    from scheduling.admin import entry_detail

    from ._lookup import resolve_entry_id

    async def work(opened: ScheduledCommandStore) -> int:
        detail = await entry_detail(opened, await resolve_entry_id(opened, entry_id), datetime.now(UTC))
        if detail is None:
            typer.echo(f"error: no entry with id {entry_id!r} in {opened.description}", err=True)
            return 1
        if as_json:
            _emit_json(detail.model_dump(mode="json"))
            return 0
        from rich.table import Table

        console = _console()
        fields = Table("field", "value", show_header=False)
        for name, value in detail.entry.model_dump(exclude={"payload"}).items():
            fields.add_row(name, "-" if value is None else str(getattr(value, "value", value)))
        console.print(fields)
        if detail.stuck:
            entry = detail.entry
            console.print(
                f"STUCK: the attempt started {_iso(entry.started_at)} on {entry.lease_owner or '?'} lost its lease at "
                f"{_iso(entry.lease_expires_at)}; that worker is gone, and a live worker will recover the entry"
            )
        _print_workflow(console, detail)
        console.print("payload:")
        try:
            console.print(json.dumps(json.loads(detail.entry.payload), indent=2, ensure_ascii=False))
        except ValueError:
            console.print(detail.entry.payload)
        for attempt in detail.attempts:
            console.print(
                f"attempt {attempt.attempt}: {attempt.outcome} on {attempt.worker_id}, "
                f"{attempt.started_at.isoformat()} -> {attempt.finished_at.isoformat()}"
            )
            if attempt.error:
                console.print(attempt.error.rstrip())
        return 0

    _run_with_store(store, work)


def _print_workflow(console: Console, detail: EntryDetail) -> None:
    """The entry's parents and dependants (``after=``, groups), and how far its parents are."""
    if detail.parent_count:
        progress = ""
        if detail.entry.status.value == "WAITING":
            done = detail.parent_count - detail.entry.pending_parents
            progress = f": {done} of {detail.parent_count} met its condition, {detail.entry.pending_parents} to go"
        console.print(f"runs after {detail.parent_count} entries{progress}")
        for relative in detail.parents:
            console.print(f"  parent {relative.id} {relative.command_type or '-'} {_status_text(relative)}")
    if detail.dependant_count:
        console.print(f"{detail.dependant_count} entries run after it")
        for relative in detail.dependants:
            console.print(f"  dependant {relative.id} {relative.command_type or '-'} {_status_text(relative)}")


def _status_text(relative: Relative) -> str:
    return relative.status.value if relative.status is not None else "purged"


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment is not None else "?"


def cancel(
    entry_id: EntryIdArgument,
    running: Annotated[
        bool,
        typer.Option(
            "--running",
            help="Also cancel a PROCESSING entry: its worker cancels the attempt within a second and the entry ends "
            "CANCELLED, not retried (unless the attempt finishes first).",
        ),
    ] = False,
    app_spec: AppOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel a PENDING entry, or dismiss a dead letter (FAILED) that will not be run again: either becomes
    CANCELLED; a dismissed one keeps its error and attempts. With --running, a PROCESSING entry's worker is asked to
    cancel its attempt. With --app, the cancellation (and that of the dependants it cancels) is announced to the
    application's handlers. Exit code 1 if it is unknown or in another status."""
    from scheduling.admin import CANCELLABLE, CANCELLABLE_RUNNING, cancel_entry
    from scheduling.audit import Actor, record_action
    from scheduling.scheduler import CommandScheduler

    from ._lookup import resolve_entry_id

    async def work(opened: ScheduledCommandStore, app: Injector | None = None) -> int:
        full_id = await resolve_entry_id(opened, entry_id)
        now = datetime.now(UTC)
        scheduler = app.get(CommandScheduler) if app is not None else None
        result = await cancel_entry(opened, full_id, now, running=running, scheduler=scheduler)
        if result.cancelled:
            await record_action(opened, Actor.cli(), "cancel", now=now, entry_ids=[full_id])
        if as_json:
            _emit_json(result.model_dump(mode="json"))
        elif result.running:
            typer.echo(f"asked the worker running {full_id} to cancel it")
        elif result.cancelled:
            typer.echo(f"cancelled {full_id}")
        if not result.cancelled:
            await _explain_refusal(opened, "cancel", full_id, CANCELLABLE_RUNNING if running else CANCELLABLE)
            return 1
        return 0

    if app_spec is not None:
        run_with_app(app_spec, store, work)
    else:
        _run_with_store(store, work)


def requeue(
    entry_id: Annotated[
        str | None,
        typer.Argument(metavar="[ID]", help="The dead-lettered entry to run again (its id or first characters)."),
    ] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="Requeue every FAILED entry.")] = False,
    command_type: Annotated[
        str | None,
        typer.Option("--type", help="With --all-failed: only this type (module.Name, or the class name alone)."),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="With --all-failed: requeue without asking for confirmation.")
    ] = False,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run dead letters again: FAILED -> PENDING, due now, retry count 0 (exit code 1 if nothing was requeued; an
    ID that is not FAILED gets one line on stderr saying why). --all-failed states how many entries it would
    requeue and asks first (on a terminal; elsewhere it needs --yes)."""
    if (entry_id is None) == (not all_failed):
        fail("give an ID or --all-failed (not both)", 2)
    if command_type is not None and not all_failed:
        fail("--type goes with --all-failed", 2)

    from scheduling.admin import requeue_entry, requeue_failed
    from scheduling.audit import Actor, record_action

    from ._lookup import resolve_command_type, resolve_entry_id

    async def work(opened: ScheduledCommandStore) -> int:
        now = datetime.now(UTC)
        full_id = await resolve_entry_id(opened, entry_id) if entry_id is not None else None
        if full_id is not None:
            result = await requeue_entry(opened, full_id, now)
            if result.requeued:
                await record_action(opened, Actor.cli(), "requeue", now=now, entry_ids=result.requeued)
        else:
            wanted = await resolve_command_type(opened, command_type) if command_type is not None else None
            if not yes and not await _confirm_requeue_all(opened, wanted):
                return 2
            result = await requeue_failed(opened, now, wanted)
            target = "status=FAILED" + (f" type={wanted}" if wanted is not None else "")
            await record_action(
                opened, Actor.cli(), "requeue_failed", now=now, target=target, count=len(result.requeued)
            )
        requeued = result.requeued
        if as_json:
            _emit_json(result.model_dump(mode="json"))
        elif requeued or full_id is None:  # a refused ID is explained in one line below, not counted as 0 here
            typer.echo(f"requeued {len(requeued)} entr{'y' if len(requeued) == 1 else 'ies'}")
        if not requeued:
            if full_id is not None:
                await _explain_refusal(opened, "requeue", full_id, ScheduledCommandStatus.FAILED)
            return 1
        return 0

    _run_with_store(store, work)


async def _confirm_requeue_all(opened: ScheduledCommandStore, command_type: str | None) -> bool:
    """Whether the operator confirms requeueing every FAILED entry (of ``command_type``), told how many: asked on a
    terminal; refused (one line on stderr) when there is no terminal to ask on. None to requeue: nothing to ask."""
    import sys

    failed = ScheduledCommandStatus.FAILED
    if command_type is None:
        count = (await opened.count_by_status()).get(failed, 0)
    else:
        count = (await opened.count_by_command_type(failed)).get(command_type, 0)
    if count == 0:
        return True
    what = f"{count} FAILED entr{'y' if count == 1 else 'ies'}" + (f" of {command_type}" if command_type else "")
    if not sys.stdin.isatty():
        typer.echo(f"error: requeue --all-failed would requeue {what}: confirm with --yes", err=True)
        return False
    if typer.confirm(f"Requeue {what}?", default=False, err=True):
        return True
    typer.echo("nothing requeued", err=True)
    return False


def purge(
    older_than: Annotated[
        str, typer.Option(help="Finished longer ago than this: 7d, 12h, 1d12h, 90m, or ISO 8601 (P7D).")
    ],
    status_filter: Annotated[
        list[ScheduledCommandStatus] | None,
        typer.Option(
            "--status",
            case_sensitive=False,
            help="Only these terminal statuses (repeatable, any case). Default: all terminal ones.",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")] = False,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete finished entries (COMPLETED, FAILED, CANCELLED, EXPIRED) and their attempts; never PENDING or
    PROCESSING. Shows progress on a terminal. Deleting nothing is not an error: exit code 0."""
    from scheduling.admin import parse_duration
    from scheduling.admin import purge as purge_entries
    from scheduling.audit import Actor, record_action

    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        fail(str(exc), 2)
    statuses = list(status_filter) if status_filter else sorted(TERMINAL_STATUSES)
    refused = [s.value for s in statuses if s not in TERMINAL_STATUSES]
    if refused:
        fail(f"--status {', '.join(refused)} cannot be purged: only finished entries are", 2)

    async def work(opened: ScheduledCommandStore) -> int:
        from rich.progress import Progress

        now = datetime.now(UTC)
        cutoff = now - age
        console = _console()
        show_progress = console.is_terminal and not as_json and not dry_run
        with Progress(console=console, disable=not show_progress, transient=True) as progress:
            task = progress.add_task("purging", total=None)
            result = await purge_entries(
                opened,
                older_than=cutoff,
                statuses=statuses,
                dry_run=dry_run,
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
        if not dry_run:
            target = f"older_than={older_than} statuses={','.join(s.value for s in statuses)}"
            await record_action(opened, Actor.cli(), "purge", now=now, target=target, count=result.count)
        if as_json:
            _emit_json(result.model_dump(mode="json"))
        else:
            verb = "would delete" if dry_run else "deleted"
            typer.echo(
                f"{verb} {result.count} entries finished before {cutoff.isoformat()} ({', '.join(result.statuses)})"
            )
        return 0

    _run_with_store(store, work)


def audit(
    entry_id: Annotated[
        str | None,
        typer.Option("--entry", metavar="ID", help="Only the actions on this entry (id or first characters)."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1_000, help="Records to show, newest first.")] = 50,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """The audit trail: operator actions (requeue, cancel, purge, pause, resume...), newest first: when, who, from
    where, what, and the entries or the filter acted on."""
    from scheduling.audit import audit_trail

    from ._lookup import resolve_entry_id

    async def work(opened: ScheduledCommandStore) -> int:
        full_id = await resolve_entry_id(opened, entry_id) if entry_id is not None else None
        trail = await audit_trail(opened, entry_id=full_id, limit=limit)
        if as_json:
            _emit_json(trail.model_dump(mode="json"))
            return 0
        from rich.table import Table

        table = Table("when", "source", "actor", "client", "action", "count", "entries or target")
        for record in trail.records:
            aimed = ", ".join(record.entry_ids) if record.entry_ids else record.target or "-"
            table.add_row(
                record.at.isoformat(timespec="seconds"),
                record.source,
                record.actor,
                record.client or "-",
                record.action,
                str(record.count),
                aimed,
            )
        console = _console()
        console.print(table)
        console.print(f"{len(trail.records)} action{'' if len(trail.records) == 1 else 's'}")
        return 0

    _run_with_store(store, work)
