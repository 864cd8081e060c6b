"""Helpers shared by tests: run Python in a fresh process with a given environment."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_isolated(code: str, env: dict[str, str], timeout: int = 120) -> dict:
    """Run ``code`` in a new interpreter (so Hub env vars are read fresh at import) and parse the
    JSON object it prints on its last stdout line."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1",
                "OMP_NUM_THREADS": "1", **env}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full_env, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"subprocess failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
