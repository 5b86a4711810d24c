"""Command serialization: only registered command types are ever deserialized (no import from stored strings)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from mediator import Command, Mediator

from .errors import InvalidPayloadError, UnknownCommandTypeError

__all__ = ["CommandCodec", "command_type_name"]


def command_type_name(command_type: type) -> str:
    """The name a command type is stored under: ``module.QualifiedName``."""
    return f"{command_type.__module__}.{command_type.__qualname__}"


class CommandCodec:
    """Maps stored type names to the command classes the mediator has handlers for."""

    def __init__(self, mediator: Mediator) -> None:
        self._types: dict[str, type[Command[Any]]] = {
            command_type_name(t): t for t in mediator.request_types if issubclass(t, Command)
        }

    @property
    def type_names(self) -> list[str]:
        """Every command type this codec can decode, sorted."""
        return sorted(self._types)

    def decode(self, command_type: str, payload: str) -> Command[Any]:
        """Rebuild a command from its stored form.

        Raises:
            UnknownCommandTypeError: ``command_type`` is not registered.
            InvalidPayloadError: ``payload`` is not valid JSON for that class.
        """
        cls = self._types.get(command_type)
        if cls is None:
            raise UnknownCommandTypeError(command_type)
        try:
            return cls.model_validate_json(payload)
        except ValidationError as exc:
            raise InvalidPayloadError(command_type, _summarize(exc)) from exc


def _summarize(exc: ValidationError) -> str:
    problems = [f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()[:5]]
    more = exc.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")
