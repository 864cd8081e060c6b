"""``python -m training export``: a checkpoint folder with its model card, ready to push."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "Export a checkpoint (config.json + weights, sharded past 16 MiB) with a model card README.md."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detector", help="registry name (default: the checkpoint's config.json 'name')")
    p.add_argument("--source", required=True,
                   help="a checkpoint folder, a training --out folder (uses best/), demo, or org/repo@rev")
    p.add_argument("--out", help="destination folder (default: write README.md next to the source's files)")
    p.add_argument("--metrics", action="append", default=[], metavar="DIR_OR_JSON",
                   help="an `evaluate --out` folder or its metrics.json: stored in config.json "
                        "(extra.evaluation) and shown in the card (repeatable)")
    p.add_argument("--repo-id", help="the Hub repo the card's usage example names (default: forgery-lens/<name> "
                                     "with hyphens, e.g. forgery-lens/lav-demo)")
    p.add_argument("--license", help="licence of the weights (default cc-by-nc-sa-4.0: trained on FFHQ)")


def checkpoint_name(folder: Path) -> str:
    return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))["name"]


def run(args: argparse.Namespace) -> int:
    from detectors import create_detector
    from detectors.hub import resolve_source as hub_folder
    from detectors.registry import get_entry
    from training.commands.evaluate import resolve_source
    from training.export import export, load_metrics

    source = resolve_source(args.source)
    name = args.detector
    if name is None:
        if not Path(source).is_dir():
            raise SystemExit("--detector is needed when --source is not a local folder")
        name = checkpoint_name(Path(source))
    detector = create_detector(name, source)
    folder, _ = hub_folder(source, get_entry(name).family)
    out = Path(args.out) if args.out else folder
    export(detector, folder, out, load_metrics(args.metrics), repo_id=args.repo_id, license=args.license,
           command=getattr(args, "command_line", None))
    from detectors.weight_files import weight_file_names

    weights = weight_file_names(out, with_index=True)
    shown = weights[0] if len(weights) == 1 else f"{weights[0]} + {len(weights) - 1} shards"
    print(f"exported {name} to {out} (config.json, {shown}, README.md)")
    return 0
