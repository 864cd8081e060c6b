"""Gradio values in, plain values out: the face number, the cards' choices, error text, examples."""
from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pipeline

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = ROOT / "assets" / "examples"
MAX_FACES = 5
#: Seconds a visitor's session state (the decoded photo, a card's result) is kept.
STATE_TTL = 1800


def face_index(value: Any) -> int:
    try:
        return max(0, min(MAX_FACES, int(value or 1)) - 1)
    except (TypeError, ValueError):
        return 0


def error_markdown(exc: Exception) -> str:
    return f"<div class='fl-error' role='alert'>\n\n**Could not analyse this picture.** {exc}\n\n</div>"


def examples() -> tuple[list[list[str]], list[str]]:
    """Example photos and their labels from ``assets/examples/examples.json``."""
    index = EXAMPLES_DIR / "examples.json"
    if not index.is_file():
        return [], []
    items = [i for i in json.loads(index.read_text()) if (EXAMPLES_DIR / i["file"]).is_file()]
    return [[str(EXAMPLES_DIR / i["file"])] for i in items], [i["label"] for i in items]


def read_choices(slots: list[pipeline.DetectorSlot], values: tuple) -> dict[str, pipeline.Choice]:
    """(run, source) pairs in slot order -> choices; missing values mean "run the default"."""
    out = {}
    for i, slot in enumerate(slots):
        run = values[2 * i] if 2 * i < len(values) else True
        source = values[2 * i + 1] if 2 * i + 1 < len(values) else ""
        out[slot.family] = pipeline.Choice(True if run is None else bool(run), source or "")
    return out


def signature(names: list[str]) -> inspect.Signature:
    """Named API parameters (``run_lav``, ``source_lav``, ...) for a function taking ``*values``."""
    return inspect.Signature([inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names])
