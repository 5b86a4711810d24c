"""The typing files under tests/typing: the pass file type-checks clean, the fail file fails where marked."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TYPING = ROOT / "tests" / "typing"
EXPECTED = re.compile(r"#\s*E:\s*(?P<code>[a-z-]+)\s*$")
REPORTED = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")


def mypy(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--no-error-summary",
            str(path.relative_to(ROOT)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )


@pytest.mark.timeout(120)
def test_the_documented_api_type_checks() -> None:
    """pass_api.py, with assert_type on every send() result, passes mypy --strict."""
    result = mypy(TYPING / "pass_api.py")

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(120)
def test_a_wrong_result_type_fails_type_checking_where_marked() -> None:
    """fail_wrong_result.py gets exactly the errors its ``# E: <code>`` comments announce, line by line."""
    path = TYPING / "fail_wrong_result.py"
    expected = {
        number: match["code"]
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if (match := EXPECTED.search(line))
    }

    result = mypy(path)

    reported = {
        int(match["line"]): match["code"]
        for line in result.stdout.splitlines()
        if (match := REPORTED.match(line.strip()))
    }
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected, "the fail file announces its errors"
    assert reported == expected, result.stdout
