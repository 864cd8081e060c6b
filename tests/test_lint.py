"""The code passes the linter and the type checker with the project's settings in pyproject.toml.

Both come with the test extras (requirements-test.lock), so the README's test command, which CI
runs, runs them: ``ruff check .`` with ``[tool.ruff]`` and ``mypy`` with ``[tool.mypy]``
(``detectors/`` and ``pipeline/``; its cache in ``.mypy_cache/`` makes later runs take seconds).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*command: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_ruff_finds_nothing():
    result = _run("ruff", "check", "--no-cache", "--output-format", "concise", ".", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_types():
    result = _run("mypy", timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
