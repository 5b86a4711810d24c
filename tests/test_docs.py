"""Every Python example in README.md and docs/*.md runs as a reader copies it.

Each block runs on its own unless its first line says which earlier block it continues:
``# continues: <which example>``; it then runs after the last block that runs before it (and whatever that one
continues), in the same namespace. A block whose first line is ``# not run: <reason>`` is skipped; the reason is
required. A block whose first line is ``# file: name.py`` is a module the reader saves under that name, beside the
example, which imports it. Each chain of blocks is saved as one script and run as a reader runs it,
``python -W error example.py``: as ``__main__``, in a fresh interpreter and a fresh working directory, with warnings
as errors; a leaked resource (``ResourceWarning``, even from a finalizer) fails it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python[ \t]*\n(?P<code>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
NOT_RUN = re.compile(r"#\s*not run:(?P<reason>.*)")
CONTINUES = re.compile(r"#\s*continues:(?P<what>.*)")
FILE = re.compile(r"#\s*file:\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*\.py)")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  #: line number of the block's first code line in the document
    code: str

    def _first_line(self) -> str:
        return self.code.splitlines()[0].strip() if self.code.strip() else ""

    @property
    def skip_reason(self) -> str | None:
        match = NOT_RUN.fullmatch(self._first_line())
        return match["reason"].strip() if match else None

    @property
    def file_name(self) -> str | None:
        """The module file this block is saved as (None: it is run)."""
        match = FILE.fullmatch(self._first_line())
        return match["name"] if match else None

    @property
    def continues(self) -> str | None:
        """What earlier example this block continues (None: it runs on its own)."""
        match = CONTINUES.fullmatch(self._first_line())
        return match["what"].strip() if match else None


def python_blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    return [Block(path, text.count("\n", 0, m.start("code")) + 1, m["code"]) for m in FENCE.finditer(text)]


def chains(blocks: list[Block]) -> list[list[Block]]:
    """The runnable blocks grouped as they run: a block with ``# continues:`` joins the chain of the last block
    that runs before it.

    Raises:
        ValueError: a marker without its reason, or a block that continues while no block runs before it.
    """
    result: list[list[Block]] = []
    for block in blocks:
        where = f"{document_id(block.path)}:{block.line}"
        if block.skip_reason == "":
            raise ValueError(f"{where}: '# not run:' needs a reason")
        if block.continues == "":
            raise ValueError(f"{where}: '# continues:' needs to say which example it continues")
        if block.skip_reason is None and block.file_name is None:
            if block.continues is None:
                result.append([block])
            elif not result:
                raise ValueError(f"{where}: continues an example, but no example that runs comes before it")
            else:
                result[-1].append(block)
    return result


def document_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def script(chain: list[Block]) -> str:
    """The chain as the one script a reader saves: each block at its line in the document, so a traceback's line
    numbers are the document's."""
    lines: list[str] = []
    for block in chain:
        lines.extend([""] * (block.line - 1 - len(lines)))
        lines.extend(block.code.splitlines())
    return "\n".join(lines) + "\n"


def save_modules(blocks: list[Block], directory: Path) -> None:
    """Writes the document's ``# file:`` blocks where the reader saves them, beside the script."""
    for block in blocks:
        if block.file_name is not None:
            (directory / block.file_name).write_text(block.code, encoding="utf-8")


#: ``python example.py``, then a garbage collection, so that a resource the script leaves open in one of its globals
#: is reported too (at interpreter exit, CPython stops reporting them).
RUN_SCRIPT = "import gc, runpy; runpy.run_path('example.py', run_name='__main__'); gc.collect()"


def run_as_script(code: str, directory: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """As ``python -W error example.py`` in ``directory``: the example runs as ``__main__`` in a fresh
    interpreter."""
    (directory / "example.py").write_text(code, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", RUN_SCRIPT],
        cwd=directory,  # an example that writes the default store's file writes it here
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _leaks(stderr: str) -> bool:
    return "ResourceWarning" in stderr


def _chain_cases() -> list[object]:
    """One case per chain; a document whose markers are malformed has none (test_markers_are_well_formed says
    why)."""
    cases: list[object] = []
    for path in DOCUMENTS:
        try:
            document_chains = chains(python_blocks(path))
        except ValueError:
            continue
        cases += [pytest.param(path, chain, id=f"{document_id(path)}:{chain[0].line}") for chain in document_chains]
    return cases


@pytest.mark.parametrize("path", DOCUMENTS, ids=document_id)
def test_markers_are_well_formed(path: Path) -> None:
    """Every '# not run:' gives its reason and every '# continues:' follows an example that runs."""
    chains(python_blocks(path))


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("path", "chain"), _chain_cases())
def test_python_examples_run_as_scripts(path: Path, chain: list[Block], tmp_path: Path) -> None:
    """Each example, with the examples it continues, saved as one script beside the document's ``# file:``
    modules and run with ``python -W error example.py``, exits 0 and leaks nothing: what a reader sees."""
    save_modules(python_blocks(path), tmp_path)
    result = run_as_script(script(chain), tmp_path, timeout=110)
    where = f"{document_id(path)}:{chain[0].line}"
    assert result.returncode == 0, (
        f"the example at {where} failed (example.py's lines are the document's):\n{result.stderr}"
    )
    assert not _leaks(result.stderr), f"the example at {where} leaks resources:\n{result.stderr}"


def test_the_readme_has_a_runnable_quick_start() -> None:
    """README.md holds at least one Python example that is run, not skipped."""
    assert any(b.skip_reason is None for b in python_blocks(ROOT / "README.md"))


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("# not run: needs PostgreSQL\nconnect()\n", "needs PostgreSQL"),
        ("# not run:\nconnect()\n", ""),
        ("#not run:   spaced  \n", "spaced"),
        ("print('# not run: x')\n", None),
        ("x = 1\n# not run: too late\n", None),
    ],
)
def test_not_run_marker_is_read_from_the_first_line_only(code: str, reason: str | None) -> None:
    """Only a first-line '# not run: <reason>' comment skips a block, and its reason is what follows the colon."""
    assert Block(ROOT / "README.md", 1, code).skip_reason == reason


def _blocks(*codes: str) -> list[Block]:
    return [Block(ROOT / "README.md", i + 1, code) for i, code in enumerate(codes)]


def test_blocks_run_alone_unless_they_continue_an_earlier_one() -> None:
    """Blocks are separate chains; '# continues:' joins the previous chain; skipped blocks are left out."""
    blocks = _blocks(
        "a = 1\n",
        "# continues: the block above\nb = a\n",
        "c = 1\n",
        "# not run: needs a server\n",
        "# continues: the c block\nd = c\n",
    )
    assert [[b.line for b in chain] for chain in chains(blocks)] == [[1, 2], [3, 5]]


def test_a_file_block_is_saved_not_run() -> None:
    """'# file: myapp.py' names a module the reader saves; it is not a chain of its own."""
    blocks = _blocks("# file: myapp.py\nVALUE = 1\n", "from myapp import VALUE\n")
    assert blocks[0].file_name == "myapp.py" and blocks[1].file_name is None
    assert [[b.line for b in chain] for chain in chains(blocks)] == [[2]]


@pytest.mark.parametrize(
    ("codes", "problem"),
    [
        (("# continues: nothing\nx = 1\n",), "no example that runs comes before it"),
        (("# not run: needs a server\n", "# continues: the server example\nx = 1\n"), "no example that runs"),
        (("a = 1\n", "# continues:\nb = a\n"), "needs to say which example"),
        (("# not run:\nconnect()\n",), "needs a reason"),
    ],
)
def test_markers_are_checked(codes: tuple[str, ...], problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        chains(_blocks(*codes))


def test_a_block_copied_alone_fails_when_it_needs_an_earlier_one(tmp_path: Path) -> None:
    """The check has teeth: a block using a name from an earlier block, without '# continues:', fails."""
    blocks = _blocks("value = 1\n", "print(value)\n")
    result = run_as_script(script(chains(blocks)[1]), tmp_path, timeout=60)
    assert result.returncode != 0 and "NameError" in result.stderr


def test_a_chain_runs_as_one_script_with_the_documents_line_numbers(tmp_path: Path) -> None:
    """Blocks of a chain share one namespace, run as ``__main__``, and a traceback names the document's line."""
    blocks = [
        Block(ROOT / "README.md", 3, "value = __name__\n"),
        Block(ROOT / "README.md", 7, "# continues: the block above\nassert value == '__main__'\nraise SystemExit(3)\n"),
    ]
    code = script(chains(blocks)[0])
    assert code.splitlines()[2] == "value = __name__" and code.splitlines()[8] == "raise SystemExit(3)"
    assert run_as_script(code, tmp_path, timeout=60).returncode == 3


def test_a_command_defined_in_the_script_is_refused_on_a_durable_store(tmp_path: Path) -> None:
    """Why examples run as ``__main__``: a command class defined in the script cannot be scheduled on a SqlStore,
    which a module-named namespace would hide."""
    code = """
import asyncio
from injector import Injector
from mediator import Command, MediatorModule
from scheduling import CommandScheduler, SchedulingModule
from scheduling.errors import UnimportableCommandError
from stores import SqlStore

class Ping(Command[None]):
    pass

async def main() -> None:
    async with SqlStore("sqlite:///scheduled.db") as store:
        scheduler = Injector([MediatorModule(handlers=[]), SchedulingModule(store=store)]).get(CommandScheduler)
        try:
            await scheduler.schedule(Ping())
        except UnimportableCommandError:
            raise SystemExit(7) from None

asyncio.run(main())
"""
    assert run_as_script(code, tmp_path, timeout=60).returncode == 7, "expected UnimportableCommandError"


def test_a_resource_left_open_in_a_global_is_reported(tmp_path: Path) -> None:
    """A leak the interpreter's exit would not report is caught: the script's globals are collected first."""
    result = run_as_script("import socket\n\nconnection = socket.socket()\n", tmp_path, timeout=60)
    assert _leaks(result.stderr), result.stderr
