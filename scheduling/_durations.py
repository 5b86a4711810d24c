"""Durations as operators type them (``7d``, ``1d12h``, ``P7D``): the CLI's ``--older-than`` and the dashboard's."""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import TypeAdapter, ValidationError

__all__ = ["MAX_DURATION", "parse_duration"]

_DURATION = re.compile(r"(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>ms|w|d|h|m|s)")
_UNITS = {"w": 604_800.0, "d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_ISO_DURATION: TypeAdapter[timedelta] = TypeAdapter(timedelta)


#: The longest duration ``parse_duration`` accepts: "now" minus it is still a date.
MAX_DURATION = timedelta(days=365_250)


def parse_duration(text: str) -> timedelta:
    """``7d``, ``12h``, ``1d12h``, ``90m``, ``30s``, or an ISO 8601 duration (``P7D``); positive, at most
    ``MAX_DURATION`` (1000 years).

    Raises:
        ValueError: anything else, quoting the text.
    """
    compact = text.strip().lower().replace(" ", "")
    try:
        if compact and _DURATION.sub("", compact) == "":
            seconds = sum(float(m["value"]) * _UNITS[m["unit"]] for m in _DURATION.finditer(compact))
            value = timedelta(seconds=seconds)
        else:
            value = _ISO_DURATION.validate_python(text.strip())
    except ValidationError:
        raise ValueError(
            f"not a duration: {text!r} (use e.g. 7d, 12h, 1d12h, 90m, 30s, or ISO 8601 like P7D)"
        ) from None
    except OverflowError:
        raise ValueError(f"the duration {text!r} is too long: at most {MAX_DURATION.days}d") from None
    if value <= timedelta(0):
        raise ValueError(f"the duration must be positive, got {text!r}")
    if value > MAX_DURATION:
        raise ValueError(f"the duration {text!r} is too long: at most {MAX_DURATION.days}d")
    return value
