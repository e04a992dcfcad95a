"""Every ```python example of README.md runs as written, each on its own in a fresh interpreter.

Examples are read from the README at test time (whatever it holds now): one test per block, run in a
subprocess from an empty folder (files it writes land there), offline, one thread. An example that
runs a long optimisation is marked slow (it still runs in CI)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
#: calls that make an example take minutes on a shared 2-core machine (run by ``-m slow`` / CI)
SLOW_CALLS = re.compile(r"\b(invert|maximize|caricature|invert_layers|maximize_units|equivariance\w*|stitch|train\w*)\(")


def python_blocks(text: str) -> list[tuple[int, str]]:
    """The ```python fenced blocks of a markdown text: (line of the fence, code)."""
    blocks, start, lines = [], None, text.splitlines()
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if start is None and re.fullmatch(r"```\s*python3?\s*", stripped):
            start, body = number, []
        elif start is not None and stripped.startswith("```"):
            blocks.append((start, "\n".join(body) + "\n"))
            start = None
        elif start is not None:
            body.append(line)
    return blocks


BLOCKS = python_blocks(README.read_text(encoding="utf-8")) if README.is_file() else []


#: examples known not to run as written, by a phrase they contain, and why (reported to the README's
#: editor; once the example is fixed the phrase is gone and the test runs it normally)
KNOWN_WRONG: dict[str, str] = {}  # e.g. {"y = net(inputs)": "uses net and inputs that it never defines"}


def _param(line: int, code: str):
    marks = [pytest.mark.slow] if SLOW_CALLS.search(code) else []
    marks += [pytest.mark.xfail(reason=f"README.md:{line} {why}", run=False)
              for phrase, why in KNOWN_WRONG.items() if phrase in code]
    return pytest.param(code, id=f"README.md:{line}", marks=marks)


def test_python_blocks_are_found():
    text = "x\n```python\na = 1\n```\n\n```bash\nls\n```\n```python\nb = 2\n```\n"
    assert python_blocks(text) == [(2, "a = 1\n"), (9, "b = 2\n")]
    assert BLOCKS, "README.md has no ```python example"


@pytest.mark.parametrize("code", [_param(line, code) for line, code in BLOCKS])
def test_readme_example_runs_as_written(code, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, f"the example fails as written:\n{code}\n{proc.stderr[-3000:]}"
