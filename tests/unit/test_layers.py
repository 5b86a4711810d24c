"""The layers of the code (docs/concepts.md): the engine never loads the operator tooling, imports go one way, and
every module of ``mediator``, ``scheduling`` and ``stores`` stays small enough to hold one concept."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: The operator tooling inside ``scheduling``: built on the engine, never imported by it.
TOOLING = (
    "scheduling.admin",
    "scheduling._admin_recurring",
    "scheduling.cli",
    "scheduling.web",
    "scheduling.metrics",
    "scheduling._metrics_server",
    "scheduling._worker",
    "scheduling.demo",
)

#: The most lines a module may have (the style guide's limit).
MAX_MODULE_LINES = 500

#: TEMPORARY: modules over the limit that are being split on other branches right now; their size test is expected
#: to fail (strictly: it fails once one of them is within the limit, so that it leaves this list). Empty it once
#: those branches are merged; nothing may be added to it.
OVER_THE_LIMIT_FOR_NOW = frozenset({"stores/sql/_sqlite.py"})


def _sized(path: Path) -> object:
    if path.relative_to(ROOT).as_posix() in OVER_THE_LIMIT_FOR_NOW:
        return pytest.param(path, marks=pytest.mark.xfail(strict=True, reason="OVER_THE_LIMIT_FOR_NOW"))
    return path


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_tooling(name: str) -> bool:
    return any(name == tool or name.startswith(tool + ".") for tool in TOOLING)


def test_an_application_that_schedules_and_runs_commands_loads_no_tooling() -> None:
    """Scheduling, running a command and stopping the worker import nothing of the CLI, dashboard, metrics or admin."""
    script = """
import asyncio, sys
from datetime import timedelta
from injector import Injector
from mediator import Command, CommandHandler, MediatorModule
from scheduling import CommandScheduler, ManualClock, ScheduledCommandService, ScheduleOptions, SchedulingModule
from stores import MemoryStore

class Ping(Command[None]):
    pass

class PingHandler(CommandHandler[Ping, None]):
    async def handle(self, command: Ping) -> None:
        return None

async def main() -> None:
    clock = ManualClock()
    injector = Injector([MediatorModule(handlers=[PingHandler]), SchedulingModule(store=MemoryStore(), clock=clock)])
    await injector.get(CommandScheduler).schedule(Ping(), ScheduleOptions(delay=timedelta(seconds=1)))
    clock.advance(timedelta(seconds=1))
    assert await injector.get(ScheduledCommandService).run_until_idle() == 1

asyncio.run(main())
print("\\n".join(sorted(name for name in sys.modules if name.startswith("scheduling"))))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
    loaded = result.stdout.split()
    assert "scheduling.service" in loaded
    assert [name for name in loaded if _is_tooling(name)] == []


@pytest.mark.parametrize("path", _modules("scheduling"), ids=lambda path: str(path.relative_to(ROOT)))
def test_engine_modules_import_no_tooling(path: Path) -> None:
    """No module of the engine imports the tooling, at the top or inside a function."""
    name = _module_name(path)
    if _is_tooling(name) or name in ("scheduling", "scheduling.__main__"):
        return
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    imported: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            imported += [base, *(f"{base}.{alias.name}" for alias in node.names)]
    assert [module for module in imported if _is_tooling(module)] == [], f"{name} imports tooling"


@pytest.mark.parametrize(
    "path",
    [_sized(path) for path in (*_modules("mediator"), *_modules("scheduling"), *_modules("stores"))],
    ids=lambda path: str(path.relative_to(ROOT)),
)
def test_modules_stay_within_the_size_limit(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.relative_to(ROOT)} has {lines} lines; split it by concept"
