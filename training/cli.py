"""``python -m training <command>``: each command lives in ``training/commands/<name>.py``.

A command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``;
``args.command_line`` is the command as typed, paths made portable (:func:`command_line`), which
the commands that write into a checkpoint folder record there.
"""
from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
from pathlib import Path

#: the repository root: recorded paths inside it are relative to it
REPO_ROOT = Path(__file__).resolve().parent.parent
#: the shared data folder beside the repository, recorded as ``../shared/...``
SHARED = REPO_ROOT.parent / "shared"

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
    "card": "card",
}


def portable_path(arg: str) -> str:
    """``arg`` as cards and configs record a path: inside the repository relative to its root,
    inside the shared data folder beside it as ``../shared/...``; a relative path that does not
    exist, a Hub id or any other text as given (so are paths elsewhere)."""
    if "/" not in arg or "://" in arg:
        return arg
    p = Path(arg).expanduser()
    if not p.is_absolute() and not p.exists():
        return arg
    for candidate in (Path(os.path.abspath(p)), p.resolve()):
        for base, prefix in ((REPO_ROOT, ""), (SHARED, "../shared")):
            for b in (base, base.resolve()):
                try:
                    rel = candidate.relative_to(b)
                except ValueError:
                    continue
                text = "/".join(part for part in (prefix, rel.as_posix()) if part and part != ".")
                return text or "."
    return arg


def _portable_arg(arg: str) -> str:
    key, sep, value = arg.partition("=")
    if sep and "/" not in key:  # --flag=PATH, --set data.pool=PATH
        return key + sep + portable_path(value)
    return portable_path(arg)


def command_line(argv: list[str]) -> str:
    """``python -m training ARGS``, quoted as a shell would need, paths made portable."""
    return shlex.join(["python", "-m", "training", *(_portable_arg(a) for a in argv)])


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
    args.command_line = command_line(list(sys.argv[1:] if argv is None else argv))
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
