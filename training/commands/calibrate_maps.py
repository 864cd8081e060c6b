"""``python -m training calibrate-maps``: fixed colour ranges for a checkpoint's explanation maps.

Runs the detector's own explainers on real faces from the *training* split (the split logic of
``evaluate``: the recipe's pool, its seed and ``val_fraction``; the validation split and
``dev-gan`` stay untouched for measuring), collects every raw map they colour, and stores per
map kind ``lo`` = the median and ``hi`` = the 99th percentile of the pooled values in the
checkpoint's ``config.json`` under ``extra.map_scales``, its command line on
``extra.made_by.commands``, and re-renders the folder's model card from it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HELP = ("Calibrate the colour range of each explanation map on real training faces (median -> 0, 99th "
        "percentile -> 1) and store it in the checkpoint's config.json (extra.map_scales).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detector", required=True, help="registry name, e.g. rffr_demo")
    p.add_argument("--source", default="demo", help="demo | a local checkpoint folder | a training --out folder")
    p.add_argument("--data", help="a folder of real faces (or with real/ and fake/; only reals are used); default: "
                                  "the recipe's pool")
    p.add_argument("--recipe", help="recipe whose data section and seed to use (default demo)")
    p.add_argument("--split", choices=("train", "val", "all"), default="train",
                   help="which split of the data (default train: faces the checkpoint was not validated on)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe value")
    p.add_argument("--limit", type=int, default=200, metavar="N", help="real faces to use (default 200)")
    p.add_argument("--dry-run", action="store_true", help="print the ranges, write nothing")
    p.add_argument("--json", action="store_true", help="print the stored ranges as one JSON object on the last line")


def real_faces(data_cfg: dict[str, Any], detector, split: str, seed: int, limit: int):
    """Up to ``limit`` real faces of the split as :class:`AlignedFace` crops, spread evenly over it.

    From a pool: the file's crop under the detector's policy and its cached landmarks (as the app
    aligns an upload). From any other data set: the item's image, landmarks found on it.
    """
    from detectors.faces import AlignedFace
    from training.data.synthetic import SyntheticForgeries
    from training.engine import build_dataset

    cfg = {**data_cfg, "augment": False}
    if "folder" not in cfg and "deepfakebench_json" not in cfg:
        cfg["kinds"] = {"real": 1}
        cfg.pop("cycle_kinds", None)
    if cfg.get("pool"):
        cfg.pop("builder", None)  # a recipe's wrapper (e.g. ProDet's anchor quadruples) around the same pool
    dataset = build_dataset(cfg, detector.config, split, seed=seed)
    n = len(dataset)
    order = np.unique(np.linspace(0, n - 1, min(limit, n)).round().astype(int)) if limit < n else np.arange(n)
    if isinstance(dataset, SyntheticForgeries):
        for i in order:
            crop, pts = dataset.aligned(int(i))
            yield AlignedFace(crop, np.eye(2, 3), pts.astype(np.float32), detector.config.crop_policy)
        return
    taken = 0
    for i in range(n):
        if taken >= limit:
            break
        item = dataset[i]
        labels = item["label"].reshape(-1)
        images = item["image"].reshape(len(labels), *item["image"].shape[-3:])
        for label, image in zip(labels.tolist(), images):
            if int(label) == 0 and taken < limit:
                taken += 1
                yield _aligned_item(image, detector.config)


def _aligned_item(image, config):
    from detectors.faces import AlignedFace, detect_faces
    from detectors.faces.errors import NoFaceFound

    mean = np.asarray(config.mean, np.float32).reshape(3, 1, 1)
    std = np.asarray(config.std, np.float32).reshape(3, 1, 1)
    rgb = np.clip(np.asarray(image, np.float32) * std + mean, 0, 1)
    crop = np.ascontiguousarray((rgb.transpose(1, 2, 0) * 255).round().astype(np.uint8))
    try:
        landmarks = detect_faces(crop)[0].landmarks.astype(np.float32)
    except NoFaceFound:
        landmarks = np.zeros((478, 2), np.float32)
    return AlignedFace(crop, np.eye(2, 3), landmarks, config.crop_policy)


def write_map_scales(folder: Path, scales: dict[str, dict[str, Any]]) -> Path:
    """Replace ``extra.map_scales`` in ``folder/config.json``; every other key stays as it was."""
    from detectors.file_format import CONFIG_FILE
    from explain.scales import SCALES_KEY

    path = Path(folder) / CONFIG_FILE
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    data["extra"] = {**(data.get("extra") or {}), SCALES_KEY: scales}
    out = json.dumps(data, indent=2, sort_keys=True) + ("\n" if text.endswith("\n") else "")
    path.write_text(out, encoding="utf-8")
    return path


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from detectors.registry import get_entry
    from explain.evidence import explain
    from explain.scales import RULE, SCALES_KEY, calibrate, collecting
    from training.cli import portable_path
    from training.commands.evaluate import data_config, local_checkpoint, open_detector, resolve_source
    from training.export import refresh_folder
    from training.recipes import RecipeError

    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    if args.limit < 1:
        say("error: --limit must be at least 1")
        return 2
    source = resolve_source(args.source)
    detector = open_detector(args.detector, source)
    if detector is None:
        return 2
    folder = local_checkpoint(source, get_entry(args.detector).family)
    if folder is None and not args.dry_run:
        print(f"error: cannot write to {source}: not a local checkpoint folder (download it first)", file=sys.stderr)
        return 2
    # the stored ranges must not shape the raw maps being measured (they do not, but drop them anyway)
    detector.config.extra = {k: v for k, v in (detector.config.extra or {}).items() if k != SCALES_KEY}
    detector.eval()
    try:
        data_cfg, split, seed = data_config(argparse.Namespace(
            data=args.data, recipe=args.recipe, split=args.split, set=args.set, detector=args.detector))
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    describe = next((f"{k} {portable_path(str(data_cfg[k]))}" for k in ("folder", "deepfakebench_json", "pool", "builder")
                     if data_cfg.get(k)), None)
    if describe is None:
        from training.data.build import DEFAULT_POOL

        describe = f"pool {DEFAULT_POOL}"
    started = time.time()
    faces = tqdm(real_faces(data_cfg, detector, split, seed, args.limit), total=args.limit, desc="real faces",
                 unit="face", mininterval=2.0, disable=args.json)
    n_faces = 0
    with collecting() as maps:
        for aligned in faces:
            explain(detector, aligned)
            n_faces += 1
    if n_faces == 0 or not maps:
        say("error: no real faces (or no scaled maps) to calibrate on")
        return 2
    where = f"{describe}, split {split} (seed {seed}), real faces only"
    scales = {kind: {**calibrate(values), "n_faces": n_faces, "data": where, "rule": RULE}
              for kind, values in sorted(maps.items())}
    for kind, s in scales.items():
        say(f"  {kind:>26}: lo {s['lo']:.4g}  hi {s['hi']:.4g}")
    say(f"{n_faces} real faces ({where}) in {time.time() - started:.0f} s")
    if not args.dry_run:
        path = write_map_scales(folder, scales)
        written = refresh_folder(folder, getattr(args, "command_line", None))
        say(f"stored {len(scales)} map scales -> {path} (extra.{SCALES_KEY}); rewrote "
            + ", ".join(p.name for p in written))
    if args.json:
        print(json.dumps(scales))
    return 0
