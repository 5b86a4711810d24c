"""What every store can hold, checked before anything is stored: the limits of option values, and the round trip of
a command through the exact serializer and parser the worker uses.

The limits are the narrowest of the stores' column types (PostgreSQL's ``integer`` and ``varchar(n)``, text without
NUL, UTF-8), enforced above the stores so that every store, the memory store included, accepts and refuses the same
values. They are part of the contract: docs/scheduling.md lists them.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import pydantic_core
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

__all__ = [
    "INT32_MAX",
    "INT32_MIN",
    "MAX_COMMAND_TYPE_LENGTH",
    "MAX_CORRELATION_ID_LENGTH",
    "MAX_IDEMPOTENCY_KEY_LENGTH",
    "MAX_METADATA_BYTES",
    "check_command_round_trip",
    "check_storable_int",
    "check_storable_metadata",
    "check_storable_text",
]

#: ``priority`` and ``max_retries`` are 32-bit signed integers (PostgreSQL ``integer``).
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
#: Characters, not bytes (PostgreSQL ``varchar(n)``).
MAX_CORRELATION_ID_LENGTH = 256
MAX_IDEMPOTENCY_KEY_LENGTH = 512
MAX_COMMAND_TYPE_LENGTH = 512
MAX_LOCK_LENGTH = 256
#: The metadata's JSON form, in bytes of UTF-8.
MAX_METADATA_BYTES = 65_536


def check_storable_int(value: int, field: str, *, minimum: int = INT32_MIN) -> int:
    if not minimum <= value <= INT32_MAX:
        raise ValueError(f"{field} must be between {minimum} and {INT32_MAX} (a 32-bit integer), got {value}")
    return value


def check_storable_text(value: str, field: str, *, max_length: int | None = None) -> str:
    """Text every store keeps as it is: no NUL character (PostgreSQL's text cannot hold it), no lone surrogate
    (UTF-8 cannot encode it), and at most ``max_length`` characters."""
    if max_length is not None and len(value) > max_length:
        raise ValueError(
            f"{field} is {len(value)} characters long; at most {max_length} can be stored: {value[:40]!r}..."
        )
    if "\x00" in value:
        raise ValueError(f"{field} contains a NUL character, which cannot be stored: {value[:80]!r}")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"{field} contains {value[exc.start]!r}, a lone surrogate that UTF-8 cannot encode: {value[:80]!r}"
            ) from None
    return value


def check_storable_metadata(value: dict[str, str], field: str = "metadata") -> dict[str, str]:
    for key, item in value.items():
        check_storable_text(key, f"{field} key {key[:40]!r}")
        check_storable_text(item, f"{field}[{key[:40]!r}]")
    size = len(json.dumps(value).encode())
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"{field} is {size} bytes as JSON; at most {MAX_METADATA_BYTES} can be stored")
    return value


def check_command_round_trip(command: BaseModel, payload: str, command_type: str) -> None:
    """Refuse a command whose stored form would not decode to an equal command: what the worker would run must be
    what was scheduled (NaN and infinities stored as null, a field written by name and read by its alias, a field
    excluded from the JSON, nesting deeper than the parser reads, ...).

    Raises:
        ValueError: naming the command type and the first field that does not survive, and why.
    """
    try:
        decoded = type(command).model_validate_json(payload)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(map(str, error["loc"])) or _unparseable_field(command)
        raise ValueError(
            f"{command_type} cannot be stored: field {where} does not decode back from its JSON "
            f"(pydantic {error['type']}: {error['msg']}){_usual_cause(error)}"
        ) from None
    if decoded == command or _same(decoded, command):
        return
    field = next(
        (name for name in type(command).model_fields if not _same(getattr(decoded, name), getattr(command, name))),
        None,
    )
    if field is not None:
        raise ValueError(
            f"{command_type} cannot be stored: field {field} would be decoded as "
            f"{_short(getattr(decoded, field))} instead of {_short(getattr(command, field))}"
        )
    private = command.__pydantic_private__ or {}
    changed = next(
        (name for name in private if not _same((decoded.__pydantic_private__ or {}).get(name), private[name])), None
    )
    if changed is not None:
        raise ValueError(
            f"{command_type} cannot be stored: private attribute {changed} holds {_short(private[changed])}, but "
            "private attributes are not part of the JSON, so the worker's command would have its default "
            f"({_short((decoded.__pydantic_private__ or {}).get(changed))}); make it a field, or leave it unset"
        )
    raise ValueError(
        f"{command_type} cannot be stored: it would be decoded as {_short(decoded)} instead of {_short(command)}"
    )


#: Pydantic errors of a number field that read the ``null`` a NaN or an infinity is written as.
_NUMBER_ERRORS = frozenset({"float_type", "decimal_type", "finite_number"})


def _usual_cause(error: ErrorDetails) -> str:
    """Why a command pydantic wrote fails to decode, for the errors that pydantic's own defaults cause; nothing for
    the others, whose pydantic error says it all (a computed field that ``extra="forbid"`` refuses, a validator,
    ...)."""
    if error["type"] == "json_invalid":
        return "; the parser reads fewer nesting levels than the serializer writes"
    if error["type"] in _NUMBER_ERRORS and error["input"] is None:
        return "; JSON has no NaN or infinity: they are written as null"
    if error["type"] == "missing":
        return "; a field with an alias is written by name but read by its alias"
    return ""


def _same(decoded: Any, given: Any) -> bool:
    """Equality as the worker sees it: like ``==``, except that a NaN decoded back as NaN (a model that writes NaN
    as a JSON constant, a ``Decimal`` allowing it) is the value that was given, although NaN is never ``==`` NaN."""
    if decoded == given:
        return True
    if type(decoded) is not type(given):
        return False
    if isinstance(given, float | Decimal):
        return _is_nan(decoded) and _is_nan(given)
    if isinstance(given, BaseModel):
        return (
            _same(_fields(decoded), _fields(given))
            and _same(decoded.__pydantic_extra__, given.__pydantic_extra__)
            and _same(decoded.__pydantic_private__, given.__pydantic_private__)
        )
    if isinstance(given, dict):
        return decoded.keys() == given.keys() and all(_same(decoded[key], given[key]) for key in given)
    if isinstance(given, list | tuple):
        return len(decoded) == len(given) and all(map(_same, decoded, given))
    return False


def _fields(model: BaseModel) -> dict[str, Any]:
    return {name: getattr(model, name) for name in type(model).model_fields}


def _is_nan(value: float | Decimal) -> bool:
    return value.is_nan() if isinstance(value, Decimal) else math.isnan(value)


def _unparseable_field(command: BaseModel) -> str:
    """The first field whose JSON alone the parser refuses (too deeply nested), for the error message."""
    for name in type(command).model_fields:
        try:
            pydantic_core.from_json(command.model_dump_json(include={name}))
        except ValueError:
            return name
    return "<root>"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."
