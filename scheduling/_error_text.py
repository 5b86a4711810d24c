"""What a failed attempt records: its error message and its traceback, as text every store can hold, bounded in
length (an exception's own text is user data: it may hold NUL, lone surrogates, or megabytes)."""

from __future__ import annotations

import traceback

__all__ = ["error_message", "error_text"]

_MAX_ERROR_MESSAGE = 2_000
_MAX_TRACEBACK = 20_000


def error_message(exc: BaseException) -> str:
    """``Type: text`` of an exception, storable and at most 2,000 characters."""
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - an exception whose __str__ fails is still a failure to record
        text = "<the exception could not be converted to text>"
    message = _storable(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
    return message if len(message) <= _MAX_ERROR_MESSAGE else message[: _MAX_ERROR_MESSAGE - 1] + "…"


def _storable(text: str) -> str:
    """Text every store can hold: NUL escaped (PostgreSQL refuses it), lone surrogates escaped (not encodable)."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_text(exc: BaseException, message: str) -> str:
    """The message and the exception's traceback (its last 20,000 characters), storable."""
    try:
        trace = _storable("".join(traceback.format_exception(exc)))
    except Exception:  # noqa: BLE001 - a frame whose repr fails must not lose the failure
        trace = "<the traceback could not be formatted>"
    if len(trace) > _MAX_TRACEBACK:
        trace = "…" + trace[-_MAX_TRACEBACK:]
    return f"{message}\n\n{trace}"
