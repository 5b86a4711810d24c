"""Workflows: commands that run after others (``ScheduleOptions.after``), groups with a callback, and the parents'
outcomes a dependant reads. ``CommandScheduler`` gets these methods from ``WorkflowMethods``; the store keeps the
dependencies and releases dependants in the transaction of each parent's outcome (``stores/dependencies.py``).

A chain passes results along without a side store::

    first = await scheduler.schedule(FetchRate(currency="EUR"))
    second = await scheduler.schedule(ConvertPrice(amount=10), ScheduleOptions(after=first))
    # ConvertPrice's handler: (await scheduler.parent_outcomes(CommandContext.current().command_id))[0].result
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import TypeAdapter

from mediator import Command
from stores.dependencies import Dependency
from stores.entries import ScheduledCommandEntry, ScheduledCommandStatus
from stores.errors import SessionNotSupportedError, UnsupportedFeatureError

from .errors import CommandNotFoundError
from .options import ScheduleOptions
from .results import ScheduledCommandId, decode_result

if TYPE_CHECKING:
    from stores.base import ScheduledCommandStore

    from .clock import Clock

__all__ = ["ParentOutcome", "ScheduledGroup", "WorkflowMethods"]

R = TypeVar("R")
T = TypeVar("T")

_DEFAULT_OPTIONS = ScheduleOptions()


@dataclass(frozen=True, slots=True)
class ParentOutcome:
    """How one parent of a dependant (an ``after=`` entry, or a group member) ended, as the dependant reads it.

    .. versionadded:: 0.7
    """

    #: The parent's id.
    id: str
    command_type: str
    #: Its status when read: COMPLETED, FAILED, EXPIRED or CANCELLED for a parent that ended.
    status: ScheduledCommandStatus
    #: Its stored error (``"Type: message"``) when it did not complete, else None.
    error_message: str | None
    #: Its handler's result, decoded with the command's result type when the command class is registered here
    #: (plain JSON otherwise); None when it did not complete.
    result: Any

    @property
    def completed(self) -> bool:
        return self.status is ScheduledCommandStatus.COMPLETED

    def result_as(self, result_type: type[T]) -> T:
        """The result validated as ``result_type``, for a type checker that cannot know the parent's command.

        Raises:
            ValueError: the parent did not complete, or its result is not a ``result_type``.
        """
        if not self.completed:
            raise ValueError(f"parent {self.command_type} {self.id} has no result: it ended {self.status.value}")
        try:
            return TypeAdapter(result_type).validate_python(self.result)
        except ValueError as exc:
            raise ValueError(f"the result of parent {self.command_type} {self.id} is not a {result_type}") from exc


@dataclass(frozen=True, slots=True)
class ScheduledGroup(Generic[R]):
    """What ``schedule_group()`` returns: the members' ids, in order, and the callback's id (typed with its
    ``R`` for ``wait()``).

    .. versionadded:: 0.7
    """

    member_ids: tuple[str, ...]
    callback_id: ScheduledCommandId[R]


class WorkflowMethods:
    """The workflow methods of ``CommandScheduler`` (a mixin)."""

    if TYPE_CHECKING:  # what the mixin uses of CommandScheduler
        _store: ScheduledCommandStore
        _clock: Clock

        def _entries_for(
            self, commands: Sequence[Command[Any]], options: ScheduleOptions, now: Any
        ) -> list[ScheduledCommandEntry]: ...
        def _refuse_unimportable(self, commands: Sequence[Command[Any]]) -> None: ...
        def _command_class(self, command_type: str) -> type[Command[Any]] | None: ...
        def _announce_scheduled(self, entries: list[ScheduledCommandEntry], ids: list[str]) -> list[str]: ...

    def _refuse_without_dependencies(self, what: str) -> None:
        if not self._store.supports_dependencies:
            raise UnsupportedFeatureError(self._store.description, what, "use SqlStore, RedisStore or MemoryStore")

    async def _add_after(
        self, entries: list[ScheduledCommandEntry], options: ScheduleOptions, session: Any
    ) -> list[str]:
        """``schedule_many`` of entries with ``options.after``: each waits for those parents."""
        self._refuse_without_dependencies(f"ScheduleOptions.after ({list(options.after)!r})")
        if session is not None:
            raise SessionNotSupportedError(self._store.description, "a command scheduled after= cannot join a session")
        dependency = Dependency(options.after, on_success_only=options.after_condition == "success")
        return await self._store.add_dependants(entries, dict.fromkeys((e.id for e in entries), dependency))

    async def schedule_group(
        self,
        commands: Sequence[Command[Any]],
        options: ScheduleOptions | None = None,
        *,
        then: Command[R],
        then_options: ScheduleOptions | None = None,
    ) -> ScheduledGroup[R]:
        """Schedule ``commands`` (the members, with ``options``) and ``then`` (the callback, with ``then_options``),
        all or none: the callback runs exactly once, when every member has ended, whatever each outcome; it reads
        them with ``parent_outcomes()``. The callback's ``then_options.after`` adds further parents.

        Raises:
            ValueError: no member, or an ``idempotency_key`` in either options.
            UnsupportedFeatureError: the store cannot keep dependencies (a third-party store); nothing was stored.
            UnknownParentError: ``options.after`` or ``then_options.after`` names an entry the store does not hold.
            HandlerNotFoundError, PayloadTooLargeError, ...: as ``schedule()``.

        .. versionadded:: 0.7
        """
        self._refuse_without_dependencies("groups (schedule_group)")
        options = options or _DEFAULT_OPTIONS
        then_options = then_options or _DEFAULT_OPTIONS
        if not commands:
            raise ValueError("a group needs at least one command; schedule the callback alone instead")
        for given in (options, then_options):
            if given.idempotency_key is not None:
                raise ValueError(f"idempotency_key={given.idempotency_key!r} does not apply to a group")
        self._refuse_unimportable([*commands, then])
        now = self._clock.now()
        members = self._entries_for(commands, options, now)
        (callback,) = self._entries_for([then], then_options, now)
        after: dict[str, Dependency] = {}
        if options.after:
            member_dependency = Dependency(options.after, on_success_only=options.after_condition == "success")
            after = dict.fromkeys((member.id for member in members), member_dependency)
        member_ids = tuple(member.id for member in members)
        after[callback.id] = Dependency((*member_ids, *then_options.after), on_success_only=False)
        entries = [*members, callback]
        ids = self._announce_scheduled(entries, await self._store.add_dependants(entries, after))
        return ScheduledGroup(tuple(ids[:-1]), ScheduledCommandId(ids[-1]))

    async def parent_outcomes(self, command_id: str) -> list[ParentOutcome]:
        """How the parents of ``command_id`` ended (its ``after=`` entries, or its group's members), in the order
        given: a dependant's handler reads its parents' results here (``CommandContext.current().command_id``).

        Raises:
            CommandNotFoundError: the store holds no entry ``command_id``.
            ValueError: a stored result does not validate as its command's result type.

        .. versionadded:: 0.7
        """
        if await self._store.get(command_id) is None:
            raise CommandNotFoundError(command_id, self._store.description)
        outcomes: list[ParentOutcome] = []
        for parent_id in await self._store.get_parents(command_id):
            parent = await self._store.get(parent_id)
            if parent is None:  # purged by retention: its outcome is gone
                continue
            completed = parent.status is ScheduledCommandStatus.COMPLETED
            outcomes.append(
                ParentOutcome(
                    id=parent.id,
                    command_type=parent.command_type,
                    status=parent.status,
                    error_message=None if completed else parent.error_message,
                    result=decode_result(parent, self._command_class(parent.command_type)) if completed else None,
                )
            )
        return outcomes
