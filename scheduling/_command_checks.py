"""What ``schedule()`` checks of each command before it builds the entry, with whatever depends only on the
command's class found once per class: a class that passed the checks, its queue when the options name none, and
whether its JSON round trip can be known without parsing it back (``_plain_commands``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mediator import Command, HandlerNotFoundError, Mediator
from stores.base import ScheduledCommandStore

from ._plain_commands import PlainFields, holds_plain_values, plain_fields
from .codec import command_type_name
from .errors import NotACommandError, PayloadTooLargeError, UnimportableCommandError
from .options import ScheduleOptions, SchedulerSettings, queue_for
from .storable import MAX_COMMAND_TYPE_LENGTH, check_command_round_trip, check_storable_text

__all__ = ["CommandChecks"]

#: Options that name no queue: ``queue_for`` of them is a class's own queue.
_NO_QUEUE = ScheduleOptions()


class CommandChecks:
    """The checks of one scheduler (its store, mediator and settings), remembering per class what passed.

    Only what passed is remembered: a refused class (no handler, not a command, defined in ``__main__`` on a
    durable store, a bad ``default_queue``) is checked again at every call, with the same error.
    """

    def __init__(self, store: ScheduledCommandStore, mediator: Mediator, settings: SchedulerSettings) -> None:
        self._store = store
        self._mediator = mediator
        self._settings = settings
        #: Command type names already found storable (``check_storable_text``): a name is checked once.
        self._storable_names: set[str] = set()
        #: Per command class that passed the class checks: its stored type name. Handlers are registered when the
        #: mediator is built and never removed, so a class checked once stays valid; the checks and the name cost
        #: more than the entry itself.
        self._type_names: dict[type, str] = {}
        #: Per command class: its queue when the options name none (its ``default_queue``, checked, or
        #: ``"default"``), read once: reading a missing class attribute through pydantic's metaclass raises and
        #: catches an ``AttributeError`` per call.
        self._class_queues: dict[type, str] = {}
        #: Per command class: its fields when its commands' JSON round trip depends only on their values' types,
        #: else None: the round trip is then parsed back and compared for every command.
        self._plain_fields: dict[type, PlainFields | None] = {}

    def refuse_unimportable(self, commands: Sequence[Command[Any]]) -> None:
        """On a durable store, refuse command classes defined in ``__main__``: no worker can import them."""
        if not self._store.durable:
            return
        for command_class in {type(command) for command in commands}:
            if command_class in self._type_names or not issubclass(command_class, Command):
                continue  # checked before, or refused as NotACommandError with the other checks
            if command_class.__module__ == "__main__":
                raise UnimportableCommandError(command_type_name(command_class), self._store.description)

    def type_name(self, command: Command[Any]) -> str:
        """The stored type name of ``command``'s class, after the class checks (once per class).

        Raises:
            NotACommandError, UnimportableCommandError, HandlerNotFoundError: in this order, as ``schedule_many``
                raises them.
        """
        command_class = type(command)
        name = self._type_names.get(command_class)
        if name is not None:
            return name
        if not isinstance(command, Command):
            raise NotACommandError(command)
        name = command_type_name(command_class)
        if self._store.durable and command_class.__module__ == "__main__":
            raise UnimportableCommandError(name, self._store.description)
        if self._mediator.handler_for(command_class) is None:
            raise HandlerNotFoundError(command_class)
        self._type_names[command_class] = name
        return name

    def queue(self, command_class: type, options: ScheduleOptions) -> str:
        """``queue_for(command_class, options)``, the class's part read once per class."""
        if "queue" in options.model_fields_set:
            return options.queue
        queue = self._class_queues.get(command_class)
        if queue is None:
            queue = self._class_queues[command_class] = queue_for(command_class, _NO_QUEUE)
        return queue

    def payload(self, command: Command[Any], command_type: str) -> str:
        """The command's JSON, once it is known to fit ``max_payload_bytes`` and to decode to an equal command.

        Raises:
            PayloadTooLargeError: it is larger.
            ValueError: the type name cannot be stored, or the JSON would not decode to an equal command.
        """
        payload = command.model_dump_json()
        limit = self._settings.max_payload_bytes
        if len(payload) * 4 > limit:  # UTF-8 takes at most 4 bytes per character: encode only when it may matter
            size = len(payload.encode())
            if size > limit:
                raise PayloadTooLargeError(command_type, size, limit)
        if command_type not in self._storable_names:
            check_storable_text(command_type, "the command type name", max_length=MAX_COMMAND_TYPE_LENGTH)
            self._storable_names.add(command_type)
        command_class = type(command)
        try:
            fields = self._plain_fields[command_class]
        except KeyError:
            fields = self._plain_fields[command_class] = plain_fields(command_class)
        if fields is None or not holds_plain_values(command, fields):
            check_command_round_trip(command, payload, command_type)
        return payload
