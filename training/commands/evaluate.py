"""``python -m training evaluate``: frame/video AUC, EER, AP, ACC, ROC curve, calibration, localization."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HELP = "Evaluate a detector checkpoint: AUC, video AUC, EER, AP, ACC, ROC curve, localization of its maps."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detector", required=True, help="registry name, e.g. lav_demo")
    p.add_argument("--source", default="demo",
                   help="demo | random | a checkpoint folder | a training --out folder (uses its best/) | org/repo@rev")
    p.add_argument("--data", help="a folder with real/ and fake/, a folder of real faces (forgeries made per the "
                                  "recipe), or a DeepfakeBench JSON file (default: the recipe's validation data)")
    p.add_argument("--recipe", help="recipe whose data section to use when --data is not given (default demo)")
    p.add_argument("--split", choices=("train", "val", "all"),
                   help="which split of the data (default: all with a real/fake folder or JSON, else val)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value; data.* values also apply to --data (e.g. data.dataset=NAME)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--jpeg", type=float, default=0.0, metavar="P",
                   help="with forgeries made per the recipe: JPEG-compress each face, real or fake, with probability "
                        "P at the training range of qualities (60-95), as uploaded photos arrive (default 0: as made)")
    p.add_argument("--calibrate", action="store_true",
                   help="choose the decision threshold on this data (maximum balanced accuracy) and store it in "
                        "the checkpoint's config.json; use a validation split, not the test set")
    p.add_argument("--localization", type=int, default=32, metavar="N",
                   help="score each explanation map on up to N forged items with masks (0 = skip; default 32)")
    p.add_argument("--draws", type=int, default=1, metavar="N",
                   help="with forgeries made per the recipe: score N draws of them (seeds seed..seed+N-1) "
                        "and report the AUC of each and their mean (default 1)")
    p.add_argument("--record", metavar="NAME",
                   help="store these figures in the checkpoint's config.json as extra.measured.NAME, where the app "
                        "and the model card read how well the checkpoint detects, by kind (a local folder or demo)")
    p.add_argument("--label", help="with --record: what the fakes are, in words (e.g. 'StyleGAN2 faces')")
    p.add_argument("--out", help="folder for metrics.json and roc.png")
    p.add_argument("--cpu", action="store_true", help="evaluate on the CPU even if a GPU is present")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object on the last line")


def local_checkpoint(source: str, family: str) -> Path | None:
    """The folder a ``--calibrate`` may write to (``demo`` or a local folder), else ``None``."""
    from detectors.hub import resolve_source

    folder, label = resolve_source(source, family)
    return folder if label == "demo" or label.startswith("local:") else None


def data_config(args: argparse.Namespace) -> tuple[dict[str, Any], str, int]:
    """``(data section, split, seed)``: the seed is the recipe's, so its splits match training's."""
    from training.commands.train import DATA_SOURCE_KEYS, data_source
    from training.recipes import load_recipe, stage_data

    split = args.split
    if args.data:
        source = data_source(args.data)
        if "pool" not in source:  # e.g. --set data.dataset=Celeb-DF-v2 for a DeepfakeBench JSON
            extra = {k: v for k, v in _data_overrides(args.set).items() if k not in DATA_SOURCE_KEYS}
            return {**source, "augment": False, **extra}, split or "all", 0
        # reals only on disk: make forgeries as the recipe says
        recipe = load_recipe(args.recipe or "demo", args.detector, args.set)
        kept = {k: v for k, v in recipe["data"].items() if k not in ("pool", "folder", "deepfakebench_json")}
        return {**kept, **source, "augment": False}, split or "val", int(recipe["train"]["seed"])
    recipe = load_recipe(args.recipe or "demo", args.detector, args.set)
    cfg = stage_data(recipe, "main", "mixed", validation=(split or "val") == "val")
    return {**cfg, "augment": False}, split or "val", int(recipe["train"]["seed"])


def uploads_jpeg(probability: float) -> dict[str, Any]:
    """The ``augment`` section that only JPEG-compresses (training's quality range), nothing else."""
    return {"flip": 0.0, "color": 0.0, "blur": 0.0, "resize": 0.0, "jpeg": float(probability)}


def _data_overrides(items: list[str]) -> dict[str, Any]:
    from training.recipes import apply_override

    holder: dict[str, Any] = {}
    for item in items:
        if item.startswith("data."):
            apply_override(holder, item)
    return holder.get("data", {})


def resolve_source(source: str) -> str:
    """A training ``--out`` folder means its ``best/`` checkpoint."""
    p = Path(source).expanduser()
    if p.is_dir() and not (p / "config.json").is_file() and (p / "best" / "config.json").is_file():
        return str(p / "best")
    return source


def open_detector(name: str, source: str):
    """The detector ``name`` loaded from ``source``, or ``None`` after printing why it could not be."""
    from detectors import create_detector
    from detectors.errors import CheckpointError

    try:
        return create_detector(name, source)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def run(args: argparse.Namespace) -> int:
    import torch

    from detectors.registry import get_entry
    from training import evaluation as E
    from training import metrics as M
    from training.cli import portable_path
    from training.engine import build_dataset
    from training.export import refresh_folder
    from training.recipes import RecipeError

    source = resolve_source(args.source)
    detector = open_detector(args.detector, source)
    if detector is None:
        return 2
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    detector.to(device).eval()
    try:
        data_cfg, split, seed = data_config(args)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.draws < 1:
        print("error: --draws must be at least 1", file=sys.stderr)
        return 2
    if args.jpeg:
        if not 0 < args.jpeg <= 1 or "folder" in data_cfg or "deepfakebench_json" in data_cfg:
            print("error: --jpeg takes a probability in (0, 1] and forgeries made per the recipe (stored files keep "
                  "their own compression)", file=sys.stderr)
            return 2
        data_cfg["augment"] = uploads_jpeg(args.jpeg)
    if args.draws > 1 and ("folder" in data_cfg or "deepfakebench_json" in data_cfg):
        print("error: --draws needs forgeries made per the recipe (real/fake folders and JSON lists hold one draw)",
              file=sys.stderr)
        return 2
    dataset = build_dataset(data_cfg, detector.config, split, seed=seed)
    say = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    say(f"evaluating {args.detector} ({detector.source}) on {len(dataset)} items ({_describe(data_cfg)}, split {split})")
    result = E.score(detector, dataset, batch_size=args.batch_size, num_workers=args.num_workers,
                     progress=not args.json)
    metrics = result["metrics"]
    threshold = float(detector.config.threshold)
    if args.calibrate:
        folder = local_checkpoint(source, get_entry(args.detector).family)
        new = M.calibrate_threshold(result["scores"], result["labels"])
        if new is None:
            say("cannot calibrate: the data hold only one class")
            return 2
        if folder is None:
            say(f"cannot calibrate {source}: not a local checkpoint folder (download it first)")
            return 2
        info = {"data": _describe(data_cfg), "split": split, "n_real": metrics["n_real"], "n_fake": metrics["n_fake"],
                "previous_threshold": threshold, **({"jpeg_probability": args.jpeg} if args.jpeg else {})}
        E.write_threshold(folder, new, info)
        refresh_folder(folder, getattr(args, "command_line", None))
        say(f"calibrated threshold {new:.4f} (was {threshold:.4f}; rule: {E.CALIBRATION_RULE}) -> {folder / 'config.json'}")
        threshold = new
        detector.config.threshold = new
        metrics = M.detection_metrics(result["scores"], result["labels"], result["video_ids"], threshold=new)
    metrics["by_kind"] = E.metrics_by_kind(result, threshold)
    if args.draws > 1:
        metrics["draws"] = E.draws_summary(
            detector, lambda s: build_dataset(data_cfg, detector.config, split, seed=s), result,
            list(range(seed, seed + args.draws)), batch_size=args.batch_size, num_workers=args.num_workers,
            progress=not args.json)
    if args.localization > 0 and result["has_mask"].any():
        metrics["localization"] = E.localization(detector, dataset, max_items=args.localization,
                                                 progress=not args.json, candidates=result["has_mask"])
    metrics.update({"detector": args.detector, "source": detector.source, "data": _describe(data_cfg), "split": split})
    if args.record:
        folder = local_checkpoint(source, get_entry(args.detector).family)
        if folder is None:
            say(f"cannot record into {source}: not a local checkpoint folder (download it first)")
            return 2
        own_kinds = not ({"folder", "deepfakebench_json"} & set(data_cfg))  # forgeries made here: kinds known
        label = args.label or ("the project's own forgeries, on held-out faces" if own_kinds else _describe(data_cfg))
        record = E.measured_record(metrics, result["scores"], result["labels"], threshold, label,
                                   getattr(args, "command_line", ""), f"folder {portable_path(args.data)}"
                                   if args.data and not own_kinds else _describe(data_cfg), by_kind=own_kinds)
        E.write_measured(folder, args.record, record)
        written = refresh_folder(folder, getattr(args, "command_line", None))
        say(f"recorded as extra.measured.{args.record} -> " + ", ".join(map(str, written)))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        roc = E.plot_roc(result["scores"], result["labels"], out / "roc.png",
                         f"{args.detector} on {_describe(data_cfg)}", threshold)
        if roc:
            say(f"ROC curve: {roc}")
    say(format_report(metrics))
    if args.json:
        print(json.dumps(metrics))
    return 0


def _describe(data_cfg: dict[str, Any]) -> str:
    """The data in words, as cards and configs record it (paths repo- or ``../shared``-relative)."""
    from training.cli import portable_path

    for key in ("folder", "deepfakebench_json", "pool", "builder"):
        if data_cfg.get(key):
            return f"{key} {portable_path(str(data_cfg[key]))}"
    return "recipe data"


def format_report(m: dict[str, Any]) -> str:
    f = (lambda v: "n/a" if v is None else f"{v:.4f}")
    lines = [f"frame AUC {f(m['auc'])}  video AUC {f(m['video_auc'])}  EER {f(m['eer'])}  AP {f(m['ap'])}  "
             f"ACC@{m['threshold']:.3f} {f(m['acc'])}  ({m['n_real']} real, {m['n_fake']} fake)"]
    for kind, k in m.get("by_kind", {}).items():
        lines.append(f"  {kind:>8}: AUC vs reals {f(k['auc'])}, caught {f(k['recall'])} of {k['n']}")
    d = m.get("draws")
    if d:
        lines.append(f"over {len(d['auc'])} forgery draws: AUC {d['mean']:.4f} +- {d['std']:.4f} "
                     f"(min {d['min']:.4f}, max {d['max']:.4f}; " + ", ".join(f"{a:.3f}" for a in d["auc"]) + ")")
        lines.append("  mean by kind: " + ", ".join(f"{k} {v:.3f}" for k, v in d["by_kind_mean"].items()))
    loc = m.get("localization") or {}
    for kind, v in loc.get("maps", {}).items():
        lines.append(f"  map {kind}: pixel AUC {f(v['pixel_auc'])}, best IoU {f(v['iou'])} "
                     f"(t={v['iou_threshold']}, {v['n']} items)")
    return "\n".join(lines)
