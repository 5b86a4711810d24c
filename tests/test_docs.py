"""Every Python example in README.md and docs/*.md runs as a reader copies it.

Each block runs on its own, in a fresh namespace, unless its first line says which earlier block it continues:
``# continues: <which example>``; it then runs after the last block that runs before it (and whatever that one
continues), in the same namespace. A block whose first line is ``# not run: <reason>`` is skipped; the reason is
required. A block whose first line is ``# file: name.py`` is a module the reader saves under that name: it is
written to the examples' working directory, where the other examples import it. Each file's examples run in a fresh
interpreter with warnings as errors, and a leaked resource (``ResourceWarning``, even from a finalizer) fails them.
The namespace is a module named ``docs_example``, as an application module would be; the README's quick starts also
run as scripts.
"""

from __future__ import annotations

import json
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

#: Runs the chains it reads from stdin as JSON: [[[filename, first line, code], ...], ...]. Each chain gets a fresh
#: module namespace (registered in sys.modules, as pydantic and injector look classes' modules up there).
RUNNER = """
import gc, json, sys, types
for chain in json.load(sys.stdin):
    module = sys.modules["docs_example"] = types.ModuleType("docs_example")
    for filename, line, code in chain:
        exec(compile("\\n" * (line - 1) + code, filename, "exec"), module.__dict__)
    del module
    sys.modules.pop("docs_example", None)
    gc.collect()
"""


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


def _leaks(stderr: str) -> bool:
    return "ResourceWarning" in stderr


@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", DOCUMENTS, ids=document_id)
def test_python_examples_run(path: Path, tmp_path: Path) -> None:
    """Each example runs on its own or after the example it says it continues, in a fresh interpreter, and leaks
    nothing."""
    blocks = python_blocks(path)
    for block in blocks:
        if block.file_name is not None:
            (tmp_path / block.file_name).write_text(block.code, encoding="utf-8")
    runnable = [[(document_id(b.path), b.line, b.code) for b in chain] for chain in chains(blocks)]
    if not runnable:
        return

    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", RUNNER],
        input=json.dumps(runnable),
        cwd=tmp_path,  # an example that writes the default store's file writes it here
        capture_output=True,
        text=True,
        timeout=290,
        check=False,
    )

    assert result.returncode == 0, f"{document_id(path)} examples failed:\n{result.stderr}"
    assert not _leaks(result.stderr), f"{document_id(path)} examples leak resources:\n{result.stderr}"


def test_the_readme_has_a_runnable_quick_start() -> None:
    """README.md holds at least one Python example that is run, not skipped."""
    assert any(b.skip_reason is None for b in python_blocks(ROOT / "README.md"))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("index", range(len(python_blocks(ROOT / "README.md"))))
def test_the_readme_quick_starts_run_as_scripts_without_leaks(index: int, tmp_path: Path) -> None:
    """A README quick start saved as a file and run with ``python -W error::ResourceWarning quickstart.py``."""
    block = python_blocks(ROOT / "README.md")[index]
    if block.skip_reason is not None or block.continues is not None or block.file_name is not None:
        pytest.skip("not a standalone quick start")
    script = tmp_path / "quickstart.py"
    script.write_text(block.code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert not _leaks(result.stderr), result.stderr


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
    runnable = [[("doc.md", 1, "value = 1\n")], [("doc.md", 3, "print(value)\n")]]
    result = subprocess.run(
        [sys.executable, "-c", RUNNER], input=json.dumps(runnable), capture_output=True, text=True, check=False
    )
    assert result.returncode != 0 and "NameError" in result.stderr
