"""``python -m training measured``: how well each demo checkpoint detects, by kind of fake.

Prints the table the README and the app's About tab show, from the figures each checkpoint's
``config.json`` records (``evaluate --record``), so neither is typed by hand.
"""
from __future__ import annotations

import argparse

HELP = "print how well each demo checkpoint detects, by kind of fake (the README's table)"
START, END = "<!-- measured:start -->", "<!-- measured:end -->"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--families", default="lav,rffr,antifake_prompt,prodet,vlffd",
                   help="comma-separated families whose demo checkpoints to list (default: the five)")
    p.add_argument("--readme", metavar="PATH",
                   help=f"write the table into PATH between the lines {START} and {END}")


def table(families: list[str]) -> str:
    from detectors.hub import demo_checkpoint_dir, read_config
    from detectors.measured import measured_of
    from explain.summary import accuracy_table
    from pipeline.results import measured_json

    rows = [(f"`{family}`", measured_json(measured_of(read_config(demo_checkpoint_dir(family)))))
            for family in families]
    return accuracy_table(rows)


def with_table(text: str, table_text: str) -> str:
    """``text`` with the table between the markers replaced by ``table_text``."""
    if START not in text or END not in text:
        raise ValueError(f"no {START} ... {END} block")
    head, rest = text.split(START, 1)
    return head + START + "\n" + table_text + "\n" + END + rest.split(END, 1)[1]


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    text = table([f.strip() for f in args.families.split(",") if f.strip()])
    if not args.readme:
        print(text)
        return 0
    path = Path(args.readme)
    try:
        path.write_text(with_table(path.read_text(encoding="utf-8"), text), encoding="utf-8")
    except (OSError, ValueError) as exc:
        print(f"error: {path}: {exc}")
        return 2
    print(f"wrote the table into {path}")
    return 0
