"""The ``cqrs-scheduling`` command line (also ``python -m scheduling``).

Built on Typer: typed options, generated ``--help``, and Click's exit-code conventions (2 for usage errors).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, NoReturn

import typer

from stores.base import ScheduledCommandStore
from stores.default import DEFAULT_STORE_URL, STORE_ENV, default_store_url
from stores.entries import TERMINAL_STATUSES, ScheduledCommandStatus

#: The store when neither --store nor $CQRS_SCHEDULING_STORE says otherwise (shared with ``SchedulingModule()``).
DEFAULT_STORE = DEFAULT_STORE_URL

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help=(
            "Store URL (sqlite:///path, postgresql+psycopg://... or redis://host:6379/0). "
            f"Default: ${STORE_ENV}, then {DEFAULT_STORE}."
        ),
        show_default=False,
    ),
]


class LogFormat(StrEnum):
    text = "text"
    json = "json"


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


def store_url(option: str | None) -> str:
    """The store URL in force: --store, then $CQRS_SCHEDULING_STORE, then the SQLite default (as SchedulingModule)."""
    return default_store_url(option)


def fail(message: str, code: int = 1) -> NoReturn:
    """One clear line on stderr and a non-zero exit; never a traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


__all__ = ["app", "main"]

#: Plain help, as git and kubectl print it (flags shown as flags), with -h as well as --help.
HELP_STYLE: dict[str, Any] = {
    "rich_markup_mode": None,
    "context_settings": {"help_option_names": ["-h", "--help"]},
}

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
    from stores.errors import StoreError
    from stores.urls import store_from_url

    from .demo import run_demo

    try:
        asyncio.run(run_demo(store_from_url(store_url(store))))
    except (ValueError, StoreError, ImportError) as exc:
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
    log_format: Annotated[
        LogFormat, typer.Option(case_sensitive=False, help="Log lines as text or JSON, on stderr.")
    ] = LogFormat.text,
    log_level: Annotated[
        LogLevel,
        typer.Option(case_sensitive=False, help="The least severe log level shown (debug shows every command run)."),
    ] = LogLevel.info,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0, max=65535, help="Serve Prometheus metrics at /metrics on this port (extra: metrics; 0: any free)."
        ),
    ] = None,
    metrics_host: Annotated[
        str | None, typer.Option(help="Interface of --metrics-port (unauthenticated!). Default: 127.0.0.1.")
    ] = None,
) -> None:
    """Run the scheduled-command worker of an application until SIGINT or SIGTERM.

    The store is --store, else $CQRS_SCHEDULING_STORE, else the application's own store, except a MemoryStore,
    which a worker process cannot share: then the embedded default, sqlite:///scheduled-commands.db.

    The first signal stops it gracefully (running commands get shutdown_grace, the rest go back to PENDING);
    a second one stops it at once.

    With --metrics-port, Prometheus metrics (command counters, run duration and lag histograms, entries per
    status) are served at http://127.0.0.1:PORT/metrics while the worker runs; see docs/metrics.md.
    """
    from stores.errors import StoreError
    from stores.memory import MemoryStore
    from stores.urls import store_from_url

    from .worker import AppLoadError, apply_overrides, configure_logging, install_metrics, load_app, run_worker

    if metrics_host is not None and metrics_port is None:
        fail("--metrics-host goes with --metrics-port", 2)
    configure_logging(log_format.value, getattr(logging, log_level.value.upper()))
    sys.path.insert(0, os.getcwd())
    try:
        injector = load_app(app_spec)
    except AppLoadError as exc:
        fail(str(exc), 2)
    url = store if store is not None else os.environ.get(STORE_ENV)
    if url is None and isinstance(injector.get(ScheduledCommandStore), MemoryStore):  # type: ignore[type-abstract]
        # A worker process on a memory store could only run what it scheduled itself: use the embedded default.
        url = DEFAULT_STORE
    try:
        apply_overrides(
            injector,
            store=store_from_url(url) if url else None,
            concurrency=concurrency,
            batch_size=batch_size,
            polling_interval=polling_interval,
            worker_id=worker_id,
        )
        metrics_address = None
        if metrics_port is not None:
            install_metrics(injector)
            metrics_address = (metrics_host or "127.0.0.1", metrics_port)
        asyncio.run(run_worker(injector, metrics_address=metrics_address))
    except ImportError as exc:  # only --metrics-port imports something optional: prometheus_client
        fail(str(exc))
    except (ValueError, StoreError, OSError) as exc:
        fail(str(exc))


# -- operator commands ------------------------------------------------------------------------------------------

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (a stable, documented shape) instead of a table.")]


def _run_with_store(url_option: str | None, work: Callable[[ScheduledCommandStore], Awaitable[int]]) -> None:
    """Open the store named by --store, run ``work``, exit with its code; store errors are one line on stderr."""
    from stores.errors import StoreError
    from stores.urls import store_from_url

    async def run(store: ScheduledCommandStore) -> int:
        async with store:
            return await work(store)

    url = store_url(url_option)
    try:
        store = store_from_url(url)  # checks the URL first: a malformed one is one line, with a hint where one helps
        _refuse_missing_sqlite_file(url)
        code = asyncio.run(run(store))
    except (ValueError, StoreError, ImportError) as exc:
        fail(str(exc))
    if code:
        raise typer.Exit(code)


def _refuse_missing_sqlite_file(url: str) -> None:
    """Operator commands read an existing store: a mistyped path must not create an empty one and report it."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not os.path.exists(parsed.database):
        raise ValueError(
            f"no store at {parsed.database} (from {url}); check --store or ${STORE_ENV}, "
            "or run a worker or the demo there first"
        )


async def _explain_refusal(
    store: ScheduledCommandStore,
    action: str,
    entry_id: str,
    needed: ScheduledCommandStatus | Sequence[ScheduledCommandStatus],
) -> None:
    """Say on stderr why ``action`` did nothing: the entry is unknown, or not in the status it needs."""
    from .operations import explain_refusal

    refusal = await explain_refusal(store, action, entry_id, needed)
    typer.echo(f"error: {refusal.message}", err=True)


def _emit_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False))


def _console() -> Any:
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:  # piped: wide enough that ids and timestamps are not folded
        console = Console(highlight=False, soft_wrap=False, width=200)
    return console


def _when(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    delta = (moment - now).total_seconds()
    relative = f"in {_human(delta)}" if delta >= 0 else f"{_human(-delta)} ago"
    return f"{moment.strftime('%Y-%m-%d %H:%M:%S')}Z ({relative})"


def _human(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.1f}s"


@app.command()
def status(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Counts per status, the next due time, the oldest overdue entry and its lag, dead letters per type."""
    from .operations import overview

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
        counts.add_row(*(str(n) for n in report.counts.values()))
        console.print(counts)
        console.print(f"Next due:       {_when(report.next_due_at, report.now)}")
        if report.oldest_overdue_at is not None and report.oldest_overdue_lag_seconds is not None:
            console.print(f"Oldest overdue: {_when(report.oldest_overdue_at, report.now)}")
        finished = ", ".join(f"{n} {status}" for status, n in report.throughput.totals.items() if n) or "none"
        console.print(f"Finished in the last hour: {finished}")
        if report.dead_letters_by_type:
            letters = Table("command type", "dead letters (FAILED)", title="Dead letters")
            for command_type, count in report.dead_letters_by_type.items():
                letters.add_row(command_type, str(count))
            console.print(letters)
        return 0

    _run_with_store(store, work)


@app.command("list")
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
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Entries per page.")] = 50,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many (the next page's offset is printed).")] = 0,
    as_json: JsonOption = False,
) -> None:
    """List entries, newest first, with filters and paging."""
    from .lookup import resolve_command_type
    from .operations import list_page

    async def work(opened: ScheduledCommandStore) -> int:
        page = await list_page(
            opened,
            status=status_filter,
            command_type=await resolve_command_type(opened, command_type) if command_type is not None else None,
            correlation_id=correlation_id,
            limit=limit,
            offset=offset,
        )
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
        console.print(f"{len(page.entries)} {noun} from offset {page.offset}{more}")
        return 0

    _run_with_store(store, work)


@app.command()
def show(
    entry_id: Annotated[str, typer.Argument(metavar="ID", help="The entry's id, or its first characters.")],
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every field of one entry, its payload pretty-printed, and its attempts with their errors."""
    from .lookup import resolve_entry_id
    from .operations import entry_detail

    async def work(opened: ScheduledCommandStore) -> int:
        detail = await entry_detail(opened, await resolve_entry_id(opened, entry_id))
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


@app.command()
def cancel(
    entry_id: Annotated[str, typer.Argument(metavar="ID", help="The entry's id, or its first characters.")],
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel a PENDING entry, or dismiss a dead letter (FAILED) that will not be run again: either becomes
    CANCELLED; a dismissed one keeps its error and attempts. Exit code 1 if it is unknown or in another status."""
    from .lookup import resolve_entry_id
    from .operations import CANCELLABLE, cancel_entry

    async def work(opened: ScheduledCommandStore) -> int:
        full_id = await resolve_entry_id(opened, entry_id)
        result = await cancel_entry(opened, full_id, datetime.now(UTC))
        if as_json:
            _emit_json(result.model_dump(mode="json"))
        elif result.cancelled:
            typer.echo(f"cancelled {full_id}")
        if not result.cancelled:
            await _explain_refusal(opened, "cancel", full_id, CANCELLABLE)
            return 1
        return 0

    _run_with_store(store, work)


@app.command()
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
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run dead letters again: FAILED -> PENDING, due now, retry count 0 (exit code 1 if nothing was requeued; an
    ID that is not FAILED gets one line on stderr saying why)."""
    if (entry_id is None) == (not all_failed):
        fail("give an ID or --all-failed (not both)", 2)
    if command_type is not None and not all_failed:
        fail("--type goes with --all-failed", 2)

    from .lookup import resolve_command_type, resolve_entry_id
    from .operations import requeue_entry, requeue_failed

    async def work(opened: ScheduledCommandStore) -> int:
        now = datetime.now(UTC)
        full_id = await resolve_entry_id(opened, entry_id) if entry_id is not None else None
        if full_id is not None:
            result = await requeue_entry(opened, full_id, now)
        else:
            wanted = await resolve_command_type(opened, command_type) if command_type is not None else None
            result = await requeue_failed(opened, now, wanted)
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


@app.command()
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
    from .operations import parse_duration
    from .operations import purge as purge_entries

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

        cutoff = datetime.now(UTC) - age
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
        if as_json:
            _emit_json(result.model_dump(mode="json"))
        else:
            verb = "would delete" if dry_run else "deleted"
            typer.echo(
                f"{verb} {result.count} entries finished before {cutoff.isoformat()} ({', '.join(result.statuses)})"
            )
        return 0

    _run_with_store(store, work)


# -- recurring schedules ----------------------------------------------------------------------------------------

recurring_app = typer.Typer(
    no_args_is_help=True, help="Recurring schedules: list, pause, resume, remove.", **HELP_STYLE
)
app.add_typer(recurring_app, name="recurring")

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The schedule's name.")]


@recurring_app.command("list")
def recurring_list(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Every recurring schedule: its timing, state and next occurrence."""
    from .operations import recurring_list as list_schedules

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
    from .operations import pause_schedule

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
    from .operations import resume_schedule

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
    from .operations import remove_schedule

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


# -- the dashboard ----------------------------------------------------------------------------------------------

DASHBOARD_TOKEN_ENV = "CQRS_SCHEDULING_DASHBOARD_TOKEN"


@app.command()
def dashboard(
    store: StoreOption = None,
    host: Annotated[
        str, typer.Option(help="Interface to listen on; anything but loopback exposes the dashboard to the network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free one).")] = 8080,
    token: Annotated[
        str | None,
        typer.Option(
            envvar=DASHBOARD_TOKEN_ENV,
            show_envvar=True,
            help="The access token (prefer the environment variable: options show in process lists). "
            "Default: a random one, printed in the login URL.",
        ),
    ] = None,
    read_only: Annotated[bool, typer.Option("--read-only", help="Refuse and hide every change.")] = False,
    allowed_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-origin",
            help="Also accept changes from pages served at this origin, e.g. https://dash.example.com behind a "
            "proxy that rewrites Host (repeatable).",
        ),
    ] = None,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated proxy addresses (or *) whose X-Forwarded-Proto and X-Forwarded-For are trusted "
            "(uvicorn's option; default: $FORWARDED_ALLOW_IPS or 127.0.0.1).",
        ),
    ] = None,
) -> None:
    """Serve the web dashboard and admin JSON API of a store until SIGINT or SIGTERM (extra: web).

    Every request needs the token: as ``Authorization: Bearer <token>``, or once in the URL (``/?token=...``), which
    logs a browser in with a session cookie. See docs/dashboard.md.
    """
    try:
        import uvicorn
        from pydantic import ValidationError

        from .web import DashboardSettings, create_dashboard_app
    except ImportError as exc:
        fail(f"the dashboard needs the web extra ({exc}): pip install 'cqrs-scheduling[web]'")
    if token is not None and not token.strip():
        fail(f"--token (or ${DASHBOARD_TOKEN_ENV}) is empty: give a token, or none to get a random one", 2)
    generated = token is None
    secret = token if token is not None else secrets.token_urlsafe(24)
    try:
        settings = DashboardSettings(token=secret, read_only=read_only, allowed_origins=allowed_origin or [])
    except ValidationError as exc:
        fail(f"--allowed-origin: {'; '.join(str(e.get('ctx', {}).get('error', e['msg'])) for e in exc.errors())}", 2)
    if not _is_loopback(host):
        typer.echo(
            f"warning: listening on {host}, beyond this machine: anyone who can reach it and has the token can "
            "change the queue; put it behind TLS",
            err=True,
        )
    try:
        listener = _listen(host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")

    async def work(opened: ScheduledCommandStore) -> int:
        config = uvicorn.Config(
            create_dashboard_app(opened, settings=settings),
            lifespan="off",
            log_level="warning",
            timeout_graceful_shutdown=5,
            forwarded_allow_ips=forwarded_allow_ips,
        )
        bound_host, bound_port = listener.getsockname()[:2]
        url = f"http://{f'[{bound_host}]' if ':' in bound_host else bound_host}:{bound_port}/"
        login = f"{url}?token={secret}" if generated else f"{url} (log in with your token)"
        banner = f"Dashboard of {opened.description}{' (read-only)' if read_only else ''} at {login}"
        await _serve_until_signal(uvicorn.Server(config), listener, banner)
        return 0

    with listener:
        _run_with_store(store, work)


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listen(host: str, port: int) -> Any:
    """A listening socket on ``host:port``, bound before the store is opened so that a taken port is one clear line."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


async def _serve_until_signal(server: Any, listener: Any, banner: str) -> None:
    """Print ``banner`` and run uvicorn until SIGINT or SIGTERM, then return (exit code 0) instead of dying of the
    signal.

    uvicorn handles the signals while it serves and raises them again once it has stopped; the handlers in place
    before and after only ask the server to stop, so a signal at any moment closes the store normally and the process
    exits 0.
    """
    import signal

    def stop(number: int, frame: Any) -> None:
        server.should_exit = True

    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, stop) for sig in handled}
    try:
        typer.echo(banner)
        await server.serve(sockets=[listener])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main() -> None:
    """Console-script entry point."""
    app()
