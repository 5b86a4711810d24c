"""An operator's entries filter from text (query parameters, form fields, CLI options) to an ``EntryFilter``.

The dashboard, the admin API and the CLI name the fields alike: ``status``, ``command_type``, ``correlation_id``,
``id_prefix``, ``error`` (text the last error contains, ignoring case) and ``created_after``, ``created_before``,
``due_after``, ``due_before``, ``finished_after``, ``finished_before`` (ISO 8601; ``after`` includes the instant,
``before`` excludes it). Blank values are ignored. A bad value is a ``ValueError`` naming the field and the value.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from pydantic import ValidationError

from stores.entries import ScheduledCommandStatus
from stores.filters import EntryFilter

__all__ = ["FILTER_FIELDS", "TIME_FIELDS", "parse_filter"]

#: The time range fields, in the order forms show them.
TIME_FIELDS = (
    "created_after",
    "created_before",
    "due_after",
    "due_before",
    "finished_after",
    "finished_before",
)
#: Every field of the filter as operators name it (``error`` is ``EntryFilter.error_contains``).
FILTER_FIELDS = ("status", "command_type", "correlation_id", "id_prefix", "error", *TIME_FIELDS)


def parse_time(name: str, text: str, *, naive_is_utc: bool = False) -> datetime:
    """An ISO 8601 time with its UTC offset (``Z`` or ``+00:00``); without one only when ``naive_is_utc`` (a form
    field labelled UTC).

    Raises:
        ValueError: not a time, or no offset, naming the field and the text.
    """
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{name} {text!r} is not an ISO 8601 time (e.g. 2026-03-01T12:00:00Z)") from None
    if moment.tzinfo is None:
        if not naive_is_utc:
            raise ValueError(f"{name} {text!r} needs a UTC offset (e.g. 2026-03-01T12:00:00Z)")
        moment = moment.replace(tzinfo=UTC)
    return moment


def parse_filter(fields: Mapping[str, str | None], *, naive_is_utc: bool = False) -> EntryFilter:
    """The filter the given fields describe (blank or missing fields are not part of it).

    Raises:
        ValueError: an unknown status, a bad time, an empty range (after not before before), naming the value.
    """
    values: dict[str, object] = {}
    for name in FILTER_FIELDS:
        raw = fields.get(name)
        if raw is None or not raw.strip():
            continue
        text = raw.strip()
        if name == "status":
            try:
                values["status"] = ScheduledCommandStatus(text.upper())
            except ValueError:
                allowed = ", ".join(s.value for s in ScheduledCommandStatus)
                raise ValueError(f"unknown status {raw!r}; use one of {allowed}") from None
        elif name in TIME_FIELDS:
            values[name] = parse_time(name, text, naive_is_utc=naive_is_utc)
        else:
            values["error_contains" if name == "error" else name] = text
    try:
        return EntryFilter.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        field = ".".join(str(part) for part in first["loc"])
        if not field:  # a check across fields (a time range): its message names them
            raise ValueError(message) from None
        raise ValueError(f"{'error' if field == 'error_contains' else field}: {message}") from None
