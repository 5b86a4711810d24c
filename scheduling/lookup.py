"""What an operator types, resolved the way git and kubectl do: an entry by the start of its id, a command type by
its class name.

Used by the command line; an exact id or a full ``module.Name`` type always means itself. An ambiguous abbreviation
is an ``AmbiguousNameError`` that lists the candidates, never a guess.
"""

from __future__ import annotations

from stores.base import ScheduledCommandStore
from stores.entries import ScheduledCommandStatus

__all__ = ["MAX_CANDIDATES", "AmbiguousNameError", "resolve_command_type", "resolve_entry_id"]

#: How many candidates an ambiguous abbreviation lists.
MAX_CANDIDATES = 5


class AmbiguousNameError(ValueError):
    """An abbreviation matches more than one entry id or command type."""

    def __init__(self, kind: str, given: str, candidates: list[str], more: bool) -> None:
        self.kind = kind
        self.given = given
        self.candidates = candidates
        listed = ", ".join(candidates) + (", ..." if more else "")
        super().__init__(f"{kind} {given!r} is ambiguous: it matches {listed}")


async def resolve_entry_id(store: ScheduledCommandStore, given: str) -> str:
    """The id of the entry ``given`` names: itself when an entry has exactly that id, else the only id that starts
    with it. ``given`` itself when none does (the caller reports the unknown id).

    Raises:
        AmbiguousNameError: more than one id starts with ``given``.
    """
    if not given or await store.get(given) is not None:
        return given
    matches = await store.ids_starting_with(given, limit=MAX_CANDIDATES + 1)
    if len(matches) > 1:
        raise AmbiguousNameError("id prefix", given, matches[:MAX_CANDIDATES], len(matches) > MAX_CANDIDATES)
    return matches[0] if matches else given


async def resolve_command_type(store: ScheduledCommandStore, given: str) -> str:
    """The command type ``given`` names: itself when it is a full ``module.Name`` (it contains a dot), else the only
    stored type whose class name is ``given``. ``given`` itself when no stored type has that class name.

    Raises:
        AmbiguousNameError: stored types of several modules have that class name.
    """
    if "." in given:
        return given
    types: set[str] = set()
    for status in ScheduledCommandStatus:
        types.update(await store.count_by_command_type(status))
    matches = sorted(t for t in types if t.rsplit(".", 1)[-1] == given)
    if len(matches) > 1:
        raise AmbiguousNameError("command type", given, matches[:MAX_CANDIDATES], len(matches) > MAX_CANDIDATES)
    return matches[0] if matches else given
