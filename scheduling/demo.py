"""``cqrs-scheduling demo``: a self-contained showcase of scheduled commands.

It schedules a handful of commands that show a delay, priorities, a flaky command that succeeds on its third
attempt, one that exhausts its retries and is dead-lettered, one that expires and one that is cancelled; prints
their lifecycle notifications as they happen; and ends with a status table. It takes a few seconds.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import ClassVar

from injector import Injector
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from mediator import Command, CommandHandler, MediatorModule, NotificationHandler
from stores.base import ScheduledCommandStore
from stores.memory import MemoryStore

from .clock import SystemClock
from .entries import TERMINAL_STATUSES, ScheduledCommandEntry
from .module import SchedulingModule
from .notifications import (
    ScheduledCommandCancelled,
    ScheduledCommandCompleted,
    ScheduledCommandExpired,
    ScheduledCommandFailed,
    ScheduledCommandNotification,
    ScheduledCommandRetrying,
)
from .options import ScheduleOptions, SchedulerSettings
from .scheduler import CommandScheduler
from .service import ScheduledCommandService

__all__ = ["run_demo"]

console = Console(highlight=False)


# -- the demo application's commands and handlers ------------------------------------------------------------


class SendWelcomeEmail(Command[str]):
    """Send a welcome e-mail; returns the message id."""

    to: str


class ChargeCard(Command[None]):
    """Charge a card; the payment gateway is flaky and fails twice before it answers."""

    order_id: str
    amount_cents: int


class SyncInventory(Command[None]):
    """Call a supplier whose API is down: every attempt fails."""

    supplier: str


class BuildReport(Command[int]):
    """A slow report (2 s); returns the number of rows."""

    name: str


class SendWelcomeEmailHandler(CommandHandler[SendWelcomeEmail, str]):
    async def handle(self, command: SendWelcomeEmail) -> str:
        return f"msg-{abs(hash(command.to)) % 10_000:04d}"


class ChargeCardHandler(CommandHandler[ChargeCard, None]):
    attempts: ClassVar[dict[str, int]] = {}

    async def handle(self, command: ChargeCard) -> None:
        seen = self.attempts[command.order_id] = self.attempts.get(command.order_id, 0) + 1
        if seen < 3:
            raise ConnectionError(f"payment gateway timed out (try {seen})")


class SyncInventoryHandler(CommandHandler[SyncInventory, None]):
    async def handle(self, command: SyncInventory) -> None:
        raise RuntimeError(f"{command.supplier} API answered 503 Service Unavailable")


class BuildReportHandler(CommandHandler[BuildReport, int]):
    async def handle(self, command: BuildReport) -> int:
        await asyncio.sleep(2)
        return 1234


class PrintLifecycle(NotificationHandler[ScheduledCommandNotification]):
    """Subscribes to every lifecycle notification, like any application would."""

    async def handle(self, notification: ScheduledCommandNotification) -> None:
        name = notification.command_type.rsplit(".", 1)[-1]
        at = notification.occurred_at.strftime("%H:%M:%S.%f")[:-3]
        short = notification.command_id[:8]
        match notification:
            case ScheduledCommandCompleted(result_payload=result):
                text = f"[green]completed[/] {name} {short}" + (f" -> {result}" if result else "")
            case ScheduledCommandRetrying(attempt=attempt, error=error, next_attempt_at=when):
                text = (
                    f"[yellow]retrying[/]  {name} {short}: attempt {attempt} failed ({error}); "
                    f"next at {when.strftime('%H:%M:%S')}"
                )
            case ScheduledCommandFailed(attempts=attempts, error=error):
                text = f"[red]failed[/]    {name} {short}: dead-lettered after {attempts} attempts ({error})"
            case ScheduledCommandExpired():
                text = f"[magenta]expired[/]   {name} {short}: not started before its expiry"
            case ScheduledCommandCancelled():
                text = f"[dim]cancelled[/] {name} {short}"
            case _:
                text = f"{type(notification).__name__} {name} {short}"
        console.print(f"{at}  {text}")


# -- the showcase ----------------------------------------------------------------------------------------------


async def run_demo(store: ScheduledCommandStore | None = None) -> list[ScheduledCommandEntry]:
    """Run the showcase on ``store`` (default: a new ``MemoryStore``) and return the entries it scheduled."""
    store = store if store is not None else MemoryStore()
    settings = SchedulerSettings(
        max_concurrency=1,  # one at a time, so priorities and expiry are visible
        retry_delay_base=timedelta(milliseconds=500),
        polling_interval=timedelta(seconds=1),
        shutdown_grace=timedelta(seconds=5),
    )
    injector = Injector(
        [
            MediatorModule(
                handlers=[
                    SendWelcomeEmailHandler,
                    ChargeCardHandler,
                    SyncInventoryHandler,
                    BuildReportHandler,
                    PrintLifecycle,
                ]
            ),
            SchedulingModule(store=store, settings=settings, clock=SystemClock()),
        ]
    )
    scheduler = injector.get(CommandScheduler)
    service = injector.get(ScheduledCommandService)

    console.print(f"[bold]cqrs-scheduling demo[/] on {store.description}")
    await store.open()
    history = await store.count_by_status()
    if sum(history.values()):
        held = ", ".join(f"{count} {status.value.lower()}" for status, count in history.items() if count)
        console.print(f"The store already holds {sum(history.values())} entries from earlier runs: {held}.")
    console.print()
    plan: list[tuple[str, str]] = []

    async def schedule(what: str, command: Command[object], options: ScheduleOptions | None = None) -> str:
        command_id = await scheduler.schedule(command, options)
        plan.append((command_id, what))
        console.print(f"scheduled {type(command).__name__:<17} {command_id[:8]}  {what}")
        return command_id

    await schedule("slow report, runs first (priority 10)", BuildReport(name="daily"), ScheduleOptions(priority=10))
    await schedule("due now, priority 5", SendWelcomeEmail(to="ada@example.com"), ScheduleOptions(priority=5))
    await schedule("due now, priority 0", SendWelcomeEmail(to="alan@example.com"))
    await schedule(
        "must start within 0.5 s: the report is in the way, so it expires",
        SendWelcomeEmail(to="late@example.com"),
        ScheduleOptions(expires_after=timedelta(milliseconds=500)),
    )
    await schedule("in 3 s", SendWelcomeEmail(to="grace@example.com"), ScheduleOptions(delay=timedelta(seconds=3)))
    await schedule(
        "flaky: fails twice, then succeeds",
        ChargeCard(order_id="o-1", amount_cents=4200),
        ScheduleOptions(max_retries=3),
    )
    await schedule(
        "always fails: dead-lettered after 3 attempts",
        SyncInventory(supplier="acme"),
        ScheduleOptions(max_retries=2),
    )
    doomed = await schedule(
        "in 1 min, cancelled right away",
        SendWelcomeEmail(to="nobody@example.com"),
        ScheduleOptions(delay=timedelta(minutes=1)),
    )
    console.print()
    await scheduler.cancel(doomed)

    ids = [command_id for command_id, _ in plan]
    # A progress line on a terminal (lifecycle lines print above it); nothing extra in a pipe.
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        waiting = progress.add_task("commands finished", total=len(ids))
        async with service:
            while True:
                entries = [await scheduler.get_status(command_id) for command_id in ids]
                finished = sum(1 for entry in entries if entry is not None and entry.status in TERMINAL_STATUSES)
                progress.update(waiting, completed=finished)
                if finished == len(ids):
                    break
                await asyncio.sleep(0.1)

    final = [entry for entry in entries if entry is not None]
    await _print_table(scheduler, final)
    totals = await store.count_by_status()
    console.print(
        f"\nThe store now holds {sum(totals.values())} entries in all "
        f"({', '.join(f'{n} {s.value.lower()}' for s, n in totals.items() if n)}); run the demo again to add to them."
    )
    await store.close()
    return final


async def _print_table(scheduler: CommandScheduler, entries: list[ScheduledCommandEntry]) -> None:
    table = Table(title="\nFinal status", title_justify="left")
    for column in ("id", "command", "status", "attempts", "priority", "result / last error"):
        table.add_column(column)
    colours = {"COMPLETED": "green", "FAILED": "red", "EXPIRED": "magenta", "CANCELLED": "dim"}
    for entry in entries:
        attempts = len(await scheduler.get_attempts(entry.id))
        outcome = entry.result_payload if entry.status == "COMPLETED" else entry.error_message
        table.add_row(
            entry.id[:8],
            entry.command_type.rsplit(".", 1)[-1],
            f"[{colours.get(entry.status, 'white')}]{entry.status.value}[/]",
            str(attempts),
            str(entry.priority),
            outcome or "",
        )
    console.print(table)
    console.print(
        "\nEvery attempt is recorded: try scheduler.get_attempts(id) for the worker, timings and traceback of each."
    )
