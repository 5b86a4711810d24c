"""``cqrs-scheduling outcomes``: completed, retried, failed and expired over the last hour, day or week."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from stores.base import ScheduledCommandStore

from ._common import JsonOption, StoreOption, _console, _emit_json, _run_with_store

RangeOption = Annotated[str, typer.Option("--range", help="1h (per minute), 24h (per hour) or 7d (per 6 hours).")]


def outcomes(range_: RangeOption = "1h", store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Outcomes over time (the dashboard's overview chart) and the failures per command type over the range."""
    from scheduling.admin import OUTCOME_RANGES, outcome_history

    if range_ not in OUTCOME_RANGES:
        typer.echo(f"error: unknown range {range_!r}; use one of {', '.join(OUTCOME_RANGES)}", err=True)
        raise typer.Exit(2)

    async def work(opened: ScheduledCommandStore) -> int:
        history = await outcome_history(opened, datetime.now(UTC), range_)
        if as_json:
            _emit_json(history.model_dump(mode="json"))
            return 0
        from rich.table import Table

        table = Table("from (UTC)", *history.totals)
        for bucket in history.buckets:
            if any(bucket.counts.values()):
                table.add_row(f"{bucket.start:%Y-%m-%d %H:%M}", *(f"{n:,}" for n in bucket.counts.values()))
        console = _console()
        console.print(table)
        console.print("total: " + ", ".join(f"{n:,} {outcome}" for outcome, n in history.totals.items()))
        for failures in history.failures_by_type:
            console.print(f"  {failures.command_type}: {failures.failed:,} failed, {failures.retried:,} retried")
        return 0

    _run_with_store(store, work)
