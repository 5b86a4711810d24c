"""The entry model, re-exported: it is defined in ``stores.entries`` because stores persist it and must not depend on
the ``scheduling`` package (which depends on them)."""

from stores.entries import (
    TERMINAL_STATUSES,
    AttemptOutcome,
    AttemptRecord,
    ScheduledCommandEntry,
    ScheduledCommandStatus,
)

__all__ = ["TERMINAL_STATUSES", "AttemptOutcome", "AttemptRecord", "ScheduledCommandEntry", "ScheduledCommandStatus"]
