"""Every Python example in README.md and docs/*.md runs: each file's blocks in order, in one namespace.

A block whose first line is ``# not run: <reason>`` is skipped; the reason is required. Each file runs in a fresh
interpreter (warnings are errors there too), so examples can call ``asyncio.run`` and cannot leak into each other.
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

#: Runs the blocks it reads from stdin as JSON: [[filename, first line, code], ...], in one namespace.
#: The namespace is a registered module, as pydantic and injector look classes' modules up in sys.modules.
RUNNER = """
import json, sys, types
module = sys.modules["docs_example"] = types.ModuleType("docs_example")
for filename, line, code in json.load(sys.stdin):
    exec(compile("\\n" * (line - 1) + code, filename, "exec"), module.__dict__)
"""


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  #: line number of the block's first code line in the document
    code: str

    @property
    def skip_reason(self) -> str | None:
        first = self.code.splitlines()[0] if self.code.strip() else ""
        match = NOT_RUN.fullmatch(first.strip())
        return match["reason"].strip() if match else None


def python_blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    return [Block(path, text.count("\n", 0, m.start("code")) + 1, m["code"]) for m in FENCE.finditer(text)]


def document_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("path", DOCUMENTS, ids=document_id)
def test_python_examples_run(path: Path) -> None:
    """The file's python blocks run in order in a fresh interpreter, sharing one namespace."""
    blocks = python_blocks(path)
    for block in blocks:
        reason = block.skip_reason
        assert reason != "", f"{document_id(path)}:{block.line}: '# not run:' needs a reason"
    runnable = [(document_id(b.path), b.line, b.code) for b in blocks if b.skip_reason is None]
    if not runnable:
        return

    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", RUNNER],
        input=json.dumps(runnable),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )

    assert result.returncode == 0, f"{document_id(path)} examples failed:\n{result.stderr}"


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
