"""A no-op command whose handler counts its runs, for ``bench/worker_cpu.py`` (importable, as stored types must be)."""

from __future__ import annotations

import asyncio

from mediator import Command, CommandHandler

__all__ = ["Count", "Noop", "NoopHandler"]


class Count:
    """How many handlers ran; ``done`` is set once ``target`` have."""

    ran = 0
    target = 0
    done: asyncio.Event | None = None


class Noop(Command[None]):
    """Does nothing but count."""

    n: int = 0


class NoopHandler(CommandHandler[Noop, None]):
    async def handle(self, command: Noop) -> None:
        Count.ran += 1
        if Count.ran >= Count.target and Count.done is not None:
            Count.done.set()
