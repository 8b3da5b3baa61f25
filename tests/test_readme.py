"""The README's examples are tests.

* Every ```python block of README.md runs (in order, each in a fresh namespace) in a
  temporary folder holding ``photo.png`` (a 128x128 crop of docs/sample.png).
* A ```bash block runs only when the line before its fence is ``<!-- test: bash -->``
  (set-up and training blocks install packages or take hours, so they are not marked).
  It runs with ``bash -euo pipefail`` and the installed ``vqz`` console script first on
  PATH; it is marked slow (every ``vqz`` process imports torch), so ``pytest -m slow``
  runs it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SAMPLE = ROOT / "docs" / "sample.png"
BASH_MARKER = "<!-- test: bash -->"
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.M | re.S)


def blocks(language: str) -> list:
    """The README's fenced blocks in ``language``, as pytest params (line number, code)."""
    text = README.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        if match.group(1) != language:
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if language == "bash" and before.strip() != BASH_MARKER:
            continue
        line = text.count("\n", 0, match.start()) + 1
        found.append(pytest.param(line, match.group(2), id=f"README.md:{line}"))
    return found


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    with Image.open(SAMPLE) as sample:  # a 128x128 crop keeps the examples fast
        sample.crop((64, 64, 192, 192)).save(tmp_path / "photo.png")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_readme_has_examples_to_run():
    assert len(blocks("python")) >= 3 and blocks("bash")


@pytest.mark.parametrize("line, code", blocks("python"))
def test_python_example_runs(workdir, line, code):
    exec(compile(code, f"README.md:{line}", "exec"), {"__name__": f"readme_line_{line}"})


@pytest.mark.slow
@pytest.mark.parametrize("line, code", blocks("bash"))
def test_bash_example_runs(workdir, line, code):
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "vqz").exists():
        pytest.skip("the vqz console script is not installed next to this Python")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=workdir, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"README.md:{line} failed:\n{result.stderr}"
