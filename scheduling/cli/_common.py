"""What every command shares: the --store and --json options, opening the store, failing with one line, and
printing tables and JSON."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, NoReturn

import typer

from stores.base import ScheduledCommandStore
from stores.default import DEFAULT_STORE_URL, STORE_ENV, default_store_url
from stores.entries import ScheduledCommandStatus

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


def store_url(option: str | None) -> str:
    """The store URL in force: --store, then $CQRS_SCHEDULING_STORE, then the SQLite default (as SchedulingModule)."""
    return default_store_url(option)


def fail(message: str, code: int = 1) -> NoReturn:
    """One clear line on stderr and a non-zero exit; never a traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


#: Plain help, as git and kubectl print it (flags shown as flags), with -h as well as --help.
HELP_STYLE: dict[str, Any] = {
    "rich_markup_mode": None,
    "context_settings": {"help_option_names": ["-h", "--help"]},
}

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
    from scheduling.admin import explain_refusal

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
