"""Workflows through the scheduler and a running service (MemoryStore, ManualClock; one test on RedisStore): chains
that pass results along, groups whose callback reads every member's outcome, dependants cancelled by a parent that
failed, and the refusals at the edge."""

from __future__ import annotations

from typing import Any

import pytest
from injector import inject
from pydantic import ValidationError
from scheduling_app import HANDLERS, Add, Fail, Record, make_app, status

from mediator import Command, CommandHandler
from scheduling import (
    CommandContext,
    CommandScheduler,
    ScheduledCommandStatus,
    ScheduleOptions,
    UnknownParentError,
)
from scheduling.errors import CommandCancelledError, InvalidScheduleError
from stores.redis import RedisStore

WAITING = ScheduledCommandStatus.WAITING


class Double(Command[int]):
    """Doubles the sum of its parents' results."""


class Summarize(Command[list[str]]):
    """A group's callback: one ``id:status:result`` line per member."""


class DoubleHandler(CommandHandler[Double, int]):
    @inject
    def __init__(self, scheduler: CommandScheduler) -> None:
        self.scheduler = scheduler

    async def handle(self, command: Double) -> int:
        context = CommandContext.current()
        assert context is not None
        parents = await self.scheduler.parent_outcomes(context.command_id)
        return 2 * sum(parent.result_as(int) for parent in parents)


class SummarizeHandler(CommandHandler[Summarize, list[str]]):
    @inject
    def __init__(self, scheduler: CommandScheduler) -> None:
        self.scheduler = scheduler

    async def handle(self, command: Summarize) -> list[str]:
        context = CommandContext.current()
        assert context is not None
        outcomes = await self.scheduler.parent_outcomes(context.command_id)
        return [f"{o.id}:{o.status.value}:{o.result if o.completed else o.error_message}" for o in outcomes]


def workflow_app(**settings: Any) -> Any:
    return make_app(handlers=[*HANDLERS, DoubleHandler, SummarizeHandler], **settings)


async def test_a_chain_of_three_passes_results_along() -> None:
    app = workflow_app()
    scheduler = app.scheduler
    first = await scheduler.schedule(Add(a=1, b=2))
    second = await scheduler.schedule(Double(), ScheduleOptions(after=first))
    third = await scheduler.schedule(Double(), ScheduleOptions(after=[second]))
    assert (await status(app, second)).status is WAITING
    assert (await status(app, third)).status is WAITING
    async with app.service:
        assert await scheduler.wait(third, timeout=5) == 12
    assert await scheduler.result(second) == 6


async def test_a_group_callback_runs_once_and_sees_every_members_outcome() -> None:
    app = workflow_app(max_retries=0)
    scheduler = app.scheduler
    members: list[Command[Any]] = [Add(a=i, b=i) for i in range(4)]
    members.append(Fail(key="member"))
    group = await scheduler.schedule_group(members, then=Summarize())
    assert len(group.member_ids) == 5
    callback = await status(app, group.callback_id)
    assert callback.status is WAITING and callback.pending_parents == 5
    async with app.service:
        lines = await scheduler.wait(group.callback_id, timeout=5)
    assert lines[:4] == [f"{member_id}:COMPLETED:{2 * i}" for i, member_id in enumerate(group.member_ids[:4])]
    assert lines[4].startswith(f"{group.member_ids[4]}:FAILED:ValueError: failure 1 of member")
    attempts = await scheduler.get_attempts(group.callback_id)
    assert len(attempts) == 1  # exactly once


async def test_a_failed_parent_cancels_its_dependant_with_the_reason() -> None:
    app = workflow_app(max_retries=0)
    scheduler = app.scheduler
    parent = await scheduler.schedule(Fail(key="parent"))
    child = await scheduler.schedule(Record(value="never"), ScheduleOptions(after=parent))
    async with app.service:
        with pytest.raises(CommandCancelledError, match=f"parent {parent} ended FAILED"):
            await scheduler.wait(child, timeout=5)
    assert app.log.records == []


async def test_an_any_outcome_dependant_runs_after_a_failed_parent() -> None:
    app = workflow_app(max_retries=0)
    scheduler = app.scheduler
    parent = await scheduler.schedule(Fail(key="parent"))
    cleanup = await scheduler.schedule(Record(value="cleanup"), ScheduleOptions(after=parent, after_condition="any"))
    async with app.service:
        await scheduler.wait(cleanup, timeout=5)
    assert app.log.records == ["cleanup"]


async def test_cancelling_a_waiting_dependant_and_its_parent() -> None:
    app = workflow_app()
    scheduler = app.scheduler
    parent = await scheduler.schedule(Record(value="parent"), ScheduleOptions(delay=60))
    child = await scheduler.schedule(Record(value="child"), ScheduleOptions(after=parent))
    grandchild = await scheduler.schedule(Record(value="grandchild"), ScheduleOptions(after=child))
    assert await scheduler.cancel(parent)
    assert (await status(app, child)).status is ScheduledCommandStatus.CANCELLED
    assert (await status(app, grandchild)).error_message == f"ParentNotCompleted: parent {child} ended CANCELLED"


async def test_refusals_at_the_edge() -> None:
    app = workflow_app()
    scheduler = app.scheduler
    with pytest.raises(UnknownParentError, match="no-such-id"):
        await scheduler.schedule(Record(value="x"), ScheduleOptions(after="no-such-id"))
    with pytest.raises(ValidationError, match="idempotency_key='k' cannot be combined with after"):
        ScheduleOptions(after="a", idempotency_key="k")
    with pytest.raises(ValidationError, match="more than once"):
        ScheduleOptions(after=["a", "a"])
    with pytest.raises(ValueError, match="at least one command"):
        await scheduler.schedule_group([], then=Summarize())
    with pytest.raises(InvalidScheduleError, match=r"options\.after"):
        await scheduler.schedule_recurring("r", Record(value="x"), cron="* * * * *", options=ScheduleOptions(after="a"))
    assert await app.store.count_by_status() == dict.fromkeys(ScheduledCommandStatus, 0)


async def test_on_redis_a_chain_and_a_group_run_with_results_and_a_failed_parent_cancels(
    redis_url: str, redis_prefix: str
) -> None:
    """RedisStore keeps dependencies like the other stores: results pass along a chain, a group's callback sees
    every member, a failed parent cancels its dependant naming it (announced like an operator's cancel)."""
    async with RedisStore(redis_url, prefix=redis_prefix) as store:
        app = make_app(store=store, handlers=[*HANDLERS, DoubleHandler, SummarizeHandler], max_retries=0)
        scheduler = app.scheduler
        first = await scheduler.schedule(Add(a=1, b=2))
        second = await scheduler.schedule(Double(), ScheduleOptions(after=first))
        third = await scheduler.schedule(Double(), ScheduleOptions(after=[second]))
        group = await scheduler.schedule_group([Add(a=i, b=i) for i in range(3)], then=Summarize())
        failing = await scheduler.schedule(Fail(key="parent"))
        never = await scheduler.schedule(Record(value="never"), ScheduleOptions(after=failing))
        assert (await status(app, third)).status is WAITING
        assert await store.get_parents(group.callback_id) == list(group.member_ids)
        assert await store.get_dependants(first) == [second]
        async with app.service:
            assert await scheduler.wait(third, timeout=10) == 12
            lines = await scheduler.wait(group.callback_id, timeout=10)
            with pytest.raises(CommandCancelledError, match=f"parent {failing} ended FAILED"):
                await scheduler.wait(never, timeout=10)
        assert lines == [f"{member_id}:COMPLETED:{2 * i}" for i, member_id in enumerate(group.member_ids)]
        assert len(await scheduler.get_attempts(group.callback_id)) == 1
        assert app.log.records == []
