"""``python -m training <command>``: each command lives in ``training/commands/<name>.py``.

A command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys

#: command name -> module under ``training.commands``
COMMANDS = {
    "train": "train",
    "evaluate": "evaluate",
    "export": "export",
    "push": "push",
    "make-fakes": "make_fakes",
    "train-ae": "train_ae",
    "make-examples": "make_examples",
    "measured": "measured",
    "calibrate-maps": "calibrate_maps",
    "pretrained": "pretrained",
}


def _available() -> dict[str, object]:
    found = {}
    for name, module in COMMANDS.items():
        try:
            found[name] = importlib.import_module(f"training.commands.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"training.commands.{module}":
                raise
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in _available().items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    args = build_parser().parse_args(argv)
    args.command_line = "python -m training " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
