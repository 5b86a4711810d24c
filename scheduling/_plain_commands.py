"""Commands whose JSON round trip is known without parsing it back: a class of plain fields holding plain values.

``check_command_round_trip`` parses every command's JSON back and compares: the guarantee that a worker runs what
was scheduled. For most commands that cannot fail, and the check costs about as much as the serialization: a class
whose every field is an ``int``, ``str`` or ``bool`` (or one of them or ``None``), with nothing that changes values
on the way (no alias, constraint, validator, serializer, computed field, private attribute, ``model_post_init``,
string transformation, extra values, or an override of the methods involved), writes each such value as JSON that
decodes to an equal value. So the class is examined once (``plain_fields``) and each command's values are checked
for exactly those types (``holds_plain_values``); anything else, the class or the value, takes the full check.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel

__all__ = ["PlainFields", "holds_plain_values", "plain_fields"]

#: Per field: its name, its one value type, and whether it may also hold ``None``.
PlainFields = tuple[tuple[str, type, bool], ...]

_PLAIN_TYPES = (int, str, bool)
#: ``model_config`` keys that change nothing about how a plain value is written or read back. Any other key (an
#: alias generator, ``str_strip_whitespace``, ``ser_json_*``, ...) leaves the class to the full check.
_NEUTRAL_CONFIG = frozenset(
    {
        "frozen",
        "title",
        "extra",
        "strict",
        "validate_assignment",
        "validate_default",
        "arbitrary_types_allowed",
        "from_attributes",
        "use_attribute_docstrings",
        "protected_namespaces",
        "defer_build",
        "json_schema_extra",
        "hide_input_in_errors",
        "revalidate_instances",
    }
)
#: What a field may declare besides its type: documentation and defaults, nothing that changes a value.
_NEUTRAL_FIELD_ATTRIBUTES = frozenset(
    {"annotation", "default", "default_factory", "description", "title", "examples", "json_schema_extra"}
)
#: Methods of the round trip that a class could override (pydantic calls a class's own ``__init__`` when it reads
#: JSON back, so an ``__init__`` that changes values decodes to another command).
_ROUND_TRIP_METHODS = (
    "__init__",
    "model_dump_json",
    "model_validate_json",
    "__eq__",
    "model_post_init",
    "__get_pydantic_core_schema__",
    "__pydantic_init_subclass__",
)
#: JSON numbers this size and smaller round-trip in every parser setting (larger ones are left to the full check,
#: for Python's limit on the digits of an int converted from text).
_INT_LIMIT = 2**63


def plain_fields(command_class: type[BaseModel]) -> PlainFields | None:
    """The fields of ``command_class`` if its commands' JSON round trip depends only on each value's type; else
    None."""
    config = command_class.model_config
    if not config.keys() <= _NEUTRAL_CONFIG or config.get("extra") == "allow":
        return None
    decorators = command_class.__pydantic_decorators__
    if (
        decorators.validators
        or decorators.field_validators
        or decorators.root_validators
        or decorators.field_serializers
        or decorators.model_serializers
        or decorators.model_validators
        or decorators.computed_fields
        or command_class.__private_attributes__
        or command_class.__pydantic_post_init__ is not None
        or command_class.__pydantic_root_model__
        or _overrides_round_trip(command_class)
    ):
        return None
    fields = []
    for name, field in command_class.model_fields.items():
        attributes = getattr(field, "_attributes_set", None)  # what the field declares (pydantic's own record)
        if attributes is None or field.metadata:
            return None
        # Older pydantic 2 releases record some attributes left unset as None (``frozen``): None declares nothing.
        declared = {name for name, value in attributes.items() if value is not None or name == "default"}
        if not declared <= _NEUTRAL_FIELD_ATTRIBUTES:
            return None
        plain = _plain_type(field.annotation)
        if plain is None:
            return None
        fields.append((name, *plain))
    return tuple(fields)


def holds_plain_values(command: BaseModel, fields: PlainFields) -> bool:
    """Whether ``command`` (of a class ``plain_fields`` returned ``fields`` for) holds exactly those fields, each
    of exactly its type (an ``int`` subclass, a ``bool`` in an ``int`` field, an int too large, ... are not), and
    nothing else."""
    if command.__pydantic_extra__ or command.__pydantic_private__:
        return False
    values = command.__dict__
    if len(values) != len(fields):
        return False
    for name, kind, optional in fields:
        value: Any = values.get(name, _MISSING)
        if type(value) is not kind:
            if value is None and optional:
                continue
            return False
        if kind is int and not -_INT_LIMIT <= typing.cast(int, value) < _INT_LIMIT:
            return False
    return True


_MISSING = object()


def _plain_type(annotation: Any) -> tuple[type, bool] | None:
    """``(type, may be None)`` of an annotation ``int``, ``str``, ``bool`` or one of them ``| None``; else None."""
    if annotation in _PLAIN_TYPES:
        return annotation, False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        kinds = [arg for arg in args if arg is not type(None)]
        if len(args) == 2 and len(kinds) == 1 and kinds[0] in _PLAIN_TYPES:
            return kinds[0], True
    return None


def _overrides_round_trip(command_class: type[BaseModel]) -> bool:
    """Whether a class between ``command_class`` and ``BaseModel`` defines a method of the round trip."""
    for klass in command_class.__mro__:
        if klass is BaseModel:
            return False
        if any(name in vars(klass) for name in _ROUND_TRIP_METHODS):
            return True
    return True  # not a pydantic model at all
