"""``python -m training train``: train a detector by its recipe (also under ``accelerate launch``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

HELP = "Train a detector by a recipe (demo|full|PATH.yaml); checkpoints go to --out (best/, last/)."

#: keys of a recipe's ``data`` section that say where the data come from
DATA_SOURCE_KEYS = ("pool", "folder", "deepfakebench_json", "builder")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detector", help="registry name, e.g. lav_demo (default: the recipe's 'detector')")
    p.add_argument("--recipe", default="demo", help="demo | full | a YAML file | a name in training/configs (default demo)")
    p.add_argument("--data", help="override the data source: a folder of real faces (pool), a folder with "
                                  "real/ and fake/, or a DeepfakeBench JSON file")
    p.add_argument("--out", help="output folder (default runs/<detector>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from OUT/last")
    p.add_argument("--init", metavar="SOURCE",
                   help="start from the weights of a checkpoint of the same detector (demo | folder | "
                        "org/repo@revision; safetensors, strict) instead of a fresh initialisation; "
                        "ignored with --resume, whose saved state wins")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any recipe value, e.g. --set train.lr=1e-4 --set data.limit=200 (repeatable)")
    p.add_argument("--epochs", type=int, help="shortcut for --set train.epochs=N")
    p.add_argument("--max-steps", type=int, help="shortcut for --set train.max_steps=N")
    p.add_argument("--batch-size", type=int, help="shortcut for --set train.batch_size=N")
    p.add_argument("--lr", type=float, help="shortcut for --set train.lr=X")
    p.add_argument("--seed", type=int, help="shortcut for --set train.seed=N")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    p.add_argument("--stop-after", type=int, default=0, metavar="N",
                   help="stop after N optimizer steps of this invocation, leaving a resumable OUT/last "
                        "(for time-boxed jobs); the schedule is not shortened")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")


def overrides_from(args: argparse.Namespace) -> list[str]:
    items = list(args.set)
    for flag, key in (("epochs", "train.epochs"), ("max_steps", "train.max_steps"), ("batch_size", "train.batch_size"),
                      ("lr", "train.lr"), ("seed", "train.seed")):
        value = getattr(args, flag)
        if value is not None:
            items.append(f"{key}={value}")
    return items


def data_source(path: str) -> dict[str, Any]:
    """What ``--data PATH`` means for the ``data`` section."""
    p = Path(path).expanduser()
    if p.is_file() and p.suffix == ".json":
        return {"deepfakebench_json": str(p.resolve())}
    if p.is_dir() and (p / "real").is_dir() and (p / "fake").is_dir():
        return {"folder": str(p.resolve())}
    if p.is_dir():
        return {"pool": str(p.resolve())}
    raise SystemExit(f"--data {path}: not a folder or a .json file")


def with_data(recipe: dict[str, Any], path: str | None) -> dict[str, Any]:
    if path:
        kept = {k: v for k, v in recipe.get("data", {}).items() if k not in DATA_SOURCE_KEYS}
        recipe["data"] = {**kept, **data_source(path)}
    return recipe


def run(args: argparse.Namespace) -> int:
    from accelerate.utils import set_seed

    from detectors import build_detector
    from detectors.errors import CheckpointError
    from training.engine import Trainer
    from training.recipes import RecipeError, complete, load_recipe

    try:
        saved = Path(args.out) / "recipe.yaml" if args.out else None
        if args.resume and saved is not None and saved.is_file():
            recipe = yaml.safe_load(saved.read_text())
            from training.recipes import apply_override

            for item in overrides_from(args):
                apply_override(recipe, item)
            recipe = complete(recipe, source=recipe.get("source", str(saved)))
        else:
            recipe = load_recipe(args.recipe, args.detector, overrides_from(args))
        recipe = with_data(recipe, args.data)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    detector = recipe["detector"]
    out_default = Path("runs") / detector
    out = Path(args.out) if args.out else out_default
    if args.resume and not (out / "last").exists():
        print(f"error: --resume: no run to resume in {out}", file=sys.stderr)
        return 2
    from training.pretrained_init import InitError, apply_init, split_model_section

    try:
        overrides, init = split_model_section(recipe.get("model"))
    except InitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    set_seed(int(recipe["train"]["seed"]))
    model = build_detector(detector, **overrides)
    if init and not args.resume and not args.init:
        from detectors.pretrained import PretrainedError

        records = []
        for spec in init:  # model.init: towers start from named pretrained backbones (training/pretrained_init.py)
            try:
                record = apply_init(model, spec)
            except (InitError, PretrainedError) as exc:
                print(f"error: model.init {spec}: {exc}", file=sys.stderr)
                return 2
            records.append(record)
            print(f"model.init: {record['module']} starts from {record['backbone']} ({record['source']}, "
                  f"{record['tensors']} tensors; head left out: {len(record['skipped'])} tensors)")
        model.config.extra = {**(model.config.extra or {}), "init": records[0] if len(records) == 1 else records}
    if args.init and not args.resume:
        try:
            start_from(model, args.init)
        except CheckpointError as exc:
            print(f"error: --init {args.init}: {exc}", file=sys.stderr)
            return 2
    command = command_line(args)
    trainer = Trainer(model, recipe, out, cpu=args.cpu, stop_after=args.stop_after, command=command,
                      progress_bar=not args.no_progress)
    trainer.fit(resume=args.resume)
    return 0


def start_from(model, source: str) -> None:
    """Copy every tensor (and side file, e.g. a tokenizer) of the checkpoint ``source`` into
    ``model``; the checkpoint must hold the same family with the same shapes."""
    from detectors.errors import CheckpointMismatch
    from detectors.factory import load_checkpoint
    from detectors.hub import load_side_files, resolve_source

    earlier = load_checkpoint(source, expected_family=model.family)  # safety, family and config checks
    try:
        model.load_state_dict(earlier.state_dict(), strict=True)
    except RuntimeError as exc:
        raise CheckpointMismatch(f"does not fit {model.config.name}: {exc}") from None
    folder, _ = resolve_source(source, model.family)
    load_side_files(model, folder, source)
    # the model card lists the runs that led here, so the checkpoint stays reproducible
    extra = earlier.config.extra or {}
    history = list(extra.get("training_history") or [])
    if extra.get("training"):
        history.append({k: extra["training"].get(k) for k in ("command", "total_steps")})
    model.config.extra["training_history"] = history


def command_line(args: argparse.Namespace) -> str:
    """The command as a user would type it (for the log and the model card), paths made portable
    as every other recorded command's (:func:`training.cli.command_line`)."""
    from training.cli import command_line as portable_command

    parts = ["train"]
    for flag in ("detector", "recipe", "data", "out", "init"):
        value = getattr(args, flag)
        if value is not None:
            parts += [f"--{flag}", str(value)]
    for item in overrides_from(args):
        parts += ["--set", item]
    if args.cpu:
        parts.append("--cpu")
    return portable_command(parts)
