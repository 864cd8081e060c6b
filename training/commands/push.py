"""``python -m training push``: publish a checkpoint folder to the Hugging Face Hub."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HELP = "Push a checkpoint folder (with its model card) to the Hub as org/name; prints the commit."

#: weight files of either layout (one file, or the Hub's index + shards): those already in the repo
#: are removed by a push unless uploaded again, so a repo never keeps stale weights of another layout
WEIGHT_PATTERNS = ["model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors"]
#: what a Forgery Lens checkpoint repo holds (training_state/ and the like stay local)
PUSHED_FILES = ["config.json", *WEIGHT_PATTERNS, "README.md"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", required=True, help="a checkpoint folder or a training --out folder (uses best/)")
    p.add_argument("--repo-id", help="org/name on the Hub (default: the card's, e.g. forgery-lens/lav-demo "
                                     "for lav_demo; see training.export.default_repo_id)")
    p.add_argument("--detector", help="registry name (default: the checkpoint's config.json 'name')")
    p.add_argument("--metrics", action="append", default=[], metavar="DIR_OR_JSON",
                   help="evaluation results for the model card when the folder has no README.md yet")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--message", default=None, help="commit message")
    p.add_argument("--token", default=None, help="Hub token (default: the logged-in user's)")
    p.add_argument("--json", action="store_true", help="print {repo_id, commit, url} as JSON on the last line")


def run(args: argparse.Namespace) -> int:
    from huggingface_hub import HfApi

    from detectors import create_detector
    from detectors.weight_files import has_weights, weight_file_names
    from training.commands.evaluate import resolve_source
    from training.commands.export import checkpoint_name
    from training.export import default_repo_id, export, load_metrics

    folder = Path(resolve_source(args.source))
    if not (folder / "config.json").is_file() or not has_weights(folder):
        print(f"error: {folder} is not a checkpoint folder (config.json + model.safetensors, or its "
              "index + shards)", file=sys.stderr)
        return 2
    name = args.detector or checkpoint_name(folder)
    detector = create_detector(name, str(folder))  # refuse to publish what does not load
    card_repo = (detector.config.extra or {}).get("card", {}).get("repo_id")
    args.repo_id = args.repo_id or card_repo or default_repo_id(detector.config.name)
    with tempfile.TemporaryDirectory() as tmp:
        upload = folder
        if not (folder / "README.md").is_file():
            upload = export(detector, folder, Path(tmp), load_metrics(args.metrics), repo_id=args.repo_id)
        api = HfApi(token=args.token)
        api.create_repo(args.repo_id, private=args.private, exist_ok=True)
        patterns = PUSHED_FILES + weight_file_names(upload)  # the shards by name, whatever the index calls them
        patterns += list(getattr(detector, "side_files", ()) or ())  # e.g. its tokenizer
        info = api.upload_folder(repo_id=args.repo_id, folder_path=str(upload), allow_patterns=patterns,
                                 delete_patterns=WEIGHT_PATTERNS,
                                 commit_message=args.message or f"Upload {name} (Forgery Lens)")
    commit = info.oid
    print(f"pushed {name} to {args.repo_id} at commit {commit}\n"
          f'load it with: create_detector("{name}", "{args.repo_id}@{commit}")')
    if args.json:
        print(json.dumps({"repo_id": args.repo_id, "commit": commit, "url": info.commit_url}))
    return 0
