"""The entries of one ``schedule_many()``: the first command's entry, and copies of it for the others (they share
its options and due time), whole or in chunks for a store's ``add_streamed``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from mediator import Command

from ._command_checks import CommandChecks
from ._new_entry import derived_entry, new_ids
from .entries import ScheduledCommandEntry
from .options import ScheduleOptions

__all__ = ["STREAM_CHUNK", "STREAM_FROM", "SiblingEntries"]

#: ``schedule_many()`` of this many commands (or more) hands them to the store in chunks of ``STREAM_CHUNK``
#: (``add_streamed``), so that a store writing one chunk while the next is built (PostgreSQL's ``COPY``) overlaps
#: the two: building an entry costs the client about as much as inserting it costs the server.
STREAM_FROM = 1_000
STREAM_CHUNK = 500


class SiblingEntries:
    """Entries for commands scheduled with the first one (``first``: its entry): copies of ``first`` with their own
    id, type, payload and queue. Every command's own checks still run; each class's type name and queue are read
    once."""

    def __init__(
        self, checks: CommandChecks, first_command: Command[Any], first: ScheduledCommandEntry, options: ScheduleOptions
    ) -> None:
        self._checks = checks
        self._first = first
        self._options = options
        self._type_names: dict[type[Any], str] = {type(first_command): first.command_type}
        self._queues: dict[type[Any], str] = {type(first_command): first.queue}

    def of(self, commands: Sequence[Command[Any]]) -> list[ScheduledCommandEntry]:
        """The entries of ``commands`` (the first command excluded), in order."""
        checks, type_names, queues = self._checks, self._type_names, self._queues
        entries = []
        for command, entry_id in zip(commands, new_ids(len(commands)), strict=True):
            command_class = type(command)
            command_type = type_names.get(command_class)
            if command_type is None:
                command_type = type_names[command_class] = checks.type_name(command)
                queues[command_class] = checks.queue(command_class, self._options)
            entries.append(
                derived_entry(
                    self._first,
                    id=entry_id,
                    command_type=command_type,
                    payload=checks.payload(command, command_type),
                    queue=queues[command_class],
                )
            )
        return entries

    async def chunks(
        self, commands: Sequence[Command[Any]], built: list[ScheduledCommandEntry]
    ) -> AsyncIterator[list[ScheduledCommandEntry]]:
        """The entries of all ``commands`` (the first one's is ``first``) in chunks of ``STREAM_CHUNK``, each added
        to ``built`` as it is yielded, so the store writes one while the next is built. A command that fails its
        checks raises here, inside the store's ``add_streamed``, which then stores nothing."""
        for start in range(0, len(commands), STREAM_CHUNK):
            chunk = self.of(commands[max(start, 1) : start + STREAM_CHUNK])
            if start == 0:
                chunk.insert(0, self._first)
            built.extend(chunk)
            yield chunk
