"""The audit-trail part of the store contract, a base of ``ScheduledCommandStore`` (in a module of its own so that
``base.py`` stays one screenful of concepts): every store keeps operator actions as given, newest first."""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime

from .audit import AuditRecord

__all__ = ["AuditTrailStore"]


class AuditTrailStore(ABC):
    """The audit-trail methods every store implements (``stores.testing.StoreContract``).

    .. versionadded:: 0.6
    """

    @abstractmethod
    async def add_audit_record(self, record: AuditRecord) -> None:
        """Append ``record`` to the audit trail atomically.

        .. versionadded:: 0.6
        """

    @abstractmethod
    async def list_audit_records(
        self, *, entry_id: str | None = None, before: datetime | None = None, limit: int = 100
    ) -> list[AuditRecord]:
        """Up to ``limit`` records, newest first (by ``at``; records of one instant newest added first); only those
        naming ``entry_id`` in their ``entry_ids`` when given, only those strictly before ``before`` when given.

        .. versionadded:: 0.6
        """

    @abstractmethod
    async def forget_audit_records(self, *, before: datetime) -> int:
        """Delete, atomically, every record whose ``at`` is before ``before``; return how many.

        .. versionadded:: 0.6
        """
