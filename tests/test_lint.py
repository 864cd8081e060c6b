"""The code passes the linter with the project's rules (``[tool.ruff]`` in pyproject.toml).

ruff is not part of the locked test environment, so this runs wherever ruff is installed
(``pip install ruff``) and is skipped elsewhere.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUFF = shutil.which("ruff")


@pytest.mark.skipif(RUFF is None, reason="ruff is not installed")
def test_ruff_finds_nothing():
    result = subprocess.run([RUFF, "check", "--no-cache", "--output-format", "concise", "."], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
