"""With no logging configuration (uvicorn configures only its own loggers), a dead letter still prints a line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import asyncio

    from injector import Injector

    from mediator import Command, CommandHandler, MediatorModule
    from scheduling import CommandScheduler, ScheduledCommandService, ScheduleOptions, SchedulingModule
    from stores import MemoryStore


    class Charge(Command[None]):
        order: int


    class ChargeHandler(CommandHandler[Charge, None]):
        async def handle(self, command: Charge) -> None:
            raise RuntimeError("card declined")


    async def main() -> None:
        injector = Injector([MediatorModule(handlers=[ChargeHandler]), SchedulingModule(store=MemoryStore())])
        await injector.get(CommandScheduler).schedule(Charge(order=7), ScheduleOptions(max_retries=0))
        assert await injector.get(ScheduledCommandService).run_until_idle() == 1


    asyncio.run(main())
    """
)


@pytest.mark.timeout(60)
def test_a_dead_letter_is_printed_without_any_logging_configuration(tmp_path: Path) -> None:
    """The packages add no NullHandler, so Python's last-resort handler prints WARNING and above on stderr."""
    script = tmp_path / "app.py"
    script.write_text(SCRIPT, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-W", "error", str(script)], capture_output=True, text=True, timeout=50, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "failed after 1 attempt(s) and is dead-lettered: RuntimeError: card declined" in lines[0]
