"""The commands of ``bench/dashboard_entries.py``: one that completes and one that fails with a searchable error."""

from __future__ import annotations

from mediator import Command, CommandHandler

__all__ = ["Charge", "ChargeHandler", "Ship", "ShipHandler"]


class Ship(Command[None]):
    """Completes at once."""

    order: int


class Charge(Command[None]):
    """Fails every time: the error names the order, like a real payment gateway timeout would."""

    order: int


class ShipHandler(CommandHandler[Ship, None]):
    async def handle(self, command: Ship) -> None:
        return None


class ChargeHandler(CommandHandler[Charge, None]):
    async def handle(self, command: Charge) -> None:
        raise TimeoutError(f"payment gateway timed out charging order {command.order} after 30 s")
