"""``python -m training card``: rewrite a checkpoint folder's README.md and config.json from its config.json.

Everything a model card shows is recorded in ``config.json`` (training facts, evaluation, how the
folder was made: see :mod:`training.export`), so the card can always be regenerated, and
``--check`` tells whether the committed card and config are what the code writes (the shipped
checkpoints are checked by ``tests/test_model_cards.py``).
"""
from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

HELP = ("Regenerate a checkpoint folder's model card (README.md) and config.json from its config.json; "
        "--check only reports what would change.")
#: lines of a unified diff shown per file that would change
DIFF_LINES = 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folders", nargs="+", metavar="FOLDER", help="checkpoint folders (config.json + weights)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 listing the files that would change, with the head of their diff")


def changes(folder: Path) -> dict[Path, tuple[str, str]]:
    """``{path: (current text, regenerated text)}`` for each file of ``folder`` that would change."""
    from training.export import folder_texts

    found = {}
    for name, text in folder_texts(folder).items():
        path = Path(folder) / name
        current = path.read_text(encoding="utf-8") if path.is_file() else ""
        if current != text:
            found[path] = (current, text)
    return found


def diff_head(path: Path, current: str, text: str, lines: int = DIFF_LINES) -> str:
    diff = list(difflib.unified_diff(current.splitlines(), text.splitlines(), f"{path} (now)",
                                     f"{path} (regenerated)", lineterm=""))
    more = len(diff) - lines
    return "\n".join(diff[:lines] + ([f"... ({more} more diff lines)"] if more > 0 else []))


def run(args: argparse.Namespace) -> int:
    from detectors.errors import CheckpointError

    stale: list[Path] = []
    for folder in map(Path, args.folders):
        try:
            found = changes(folder)
        except CheckpointError as exc:
            print(f"error: {folder}: {exc}", file=sys.stderr)
            return 2
        for path, (current, text) in found.items():
            stale.append(path)
            if args.check:
                print(f"would change: {path}\n{diff_head(path, current, text)}")
            else:
                path.write_text(text, encoding="utf-8", newline="")
                print(f"wrote {path}")
    if args.check:
        if stale:
            print(f"{len(stale)} file(s) differ from what `python -m training card` writes: "
                  + " ".join(map(str, stale)))
            return 1
        print(f"{len(args.folders)} folder(s) up to date")
    elif not stale:
        print(f"{len(args.folders)} folder(s) already up to date")
    return 0
