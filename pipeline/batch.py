"""``python -m pipeline analyze PATH... --out results.jsonl``: many photos and videos, one JSON line each.

For people with more than a handful of files. Folders are walked recursively; photos and videos
are told apart by extension, anything else gets a ``skipped`` line saying why. Each line::

    {"path": "/abs/a.jpg", "kind": "photo", "status": "ok", "error": null, "message": "",
     "size": 1234, "mtime_ns": 1700000000000000000, "options": {...}, "report": {...}, "seconds": 1.2}

``report`` is what the Python API gives for that file: ``pipeline.report(...)[0]`` for a photo
(the app's ``/analyze`` JSON, without pictures: explanation ``image`` fields are ``null``), and
``VideoReport.to_json()`` for a video. A file that cannot be analysed gets ``status`` ``error``,
the typed error's name in ``error`` and its sentence in ``message``; the run goes on.

Resumable: a file already recorded in ``--out`` with the same path, size, modification time and
options is not analysed again; a line cut short when the run was killed is dropped and its file
analysed again. Under ``accelerate launch`` every process takes a disjoint share of the files
still to do (``pending[rank::world]``), writes ``OUT.part-RANK``, and the main process merges
the parts into ``OUT`` (files in input order; lines of files not named this time are kept
after them) and removes them. Without ``accelerate launch`` it is one process.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Photos, by extension (what :func:`detectors.faces.load_image` reads).
PHOTO_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
#: Videos, by extension (containers OpenCV's bundled FFmpeg opens).
VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv",
                              ".3gp", ".ogv", ".ts", ".mts"})
PART_SUFFIX = ".part-"


class BatchError(ValueError):
    """The run cannot start (a checkpoint named with ``--source`` does not load); says why."""

HELP = "analyse photos and videos (files or folders) into JSON lines; resumable; spreads over Accelerate processes"


# ---- which files ------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchFile:
    """One file found in the inputs: ``kind`` is ``photo``, ``video`` or ``other`` (skipped)."""

    path: str  # absolute, so a resumed run matches whatever directory it is started from
    kind: str


def kind_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in PHOTO_EXTENSIONS:
        return "photo"
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    return "other"


def _walk(folder: Path, visited: set[str] | None = None) -> Iterator[Path]:
    """Files under ``folder`` in name order, depth first; hidden files and folders (``.git``) left out,
    each real folder once (a symbolic link back up the tree does not loop)."""
    visited = set() if visited is None else visited
    real = os.path.realpath(folder)
    if real in visited:
        return
    visited.add(real)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        log.warning("cannot list %s: %s", folder, exc)
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            yield from _walk(Path(entry.path), visited)
        else:
            yield Path(entry.path)


def collect_files(inputs: Iterable[str | Path], exclude: Iterable[str | Path] = ()) -> list[BatchFile]:
    """Every file named or under a named folder, once, in input order; ``exclude``: our own output."""
    skip = {os.path.abspath(p) for p in exclude}
    seen: set[str] = set()
    files = []
    for item in inputs:
        root = Path(item)
        for path in (_walk(root) if root.is_dir() else [root]):
            key = os.path.abspath(path)
            if key in seen or key in skip:
                continue
            seen.add(key)
            files.append(BatchFile(key, kind_of(path)))
    return files


# ---- one file ---------------------------------------------------------------------------------
def _without_pictures(data: dict[str, Any]) -> dict[str, Any]:
    """No gallery is written, so explanation ``image`` indices would point nowhere."""
    for item in data.get("detectors", []):
        for e in item.get("explanations", []):
            e["image"] = None
    return data


def analyze_photo(analyzer, path: str | Path, choices: dict | None = None, evidence: bool = False) -> dict[str, Any]:
    """The app's ``/analyze`` JSON for the largest face of one photo (without pictures)."""
    from .images import prepare
    from .verdicts import report

    prepared = prepare(Path(path))
    results = list(analyzer.run(prepared, 0, choices, with_explanations=evidence))
    return _without_pictures(report(results, prepared, 0)[0])


def analyze_clip(analyzer, path: str | Path, frames: int, choices: dict | None = None,
                 evidence: bool = False) -> dict[str, Any]:
    """``VideoReport.to_json()`` for the heaviest face track of one clip."""
    from .video import analyze_video

    return analyze_video(analyzer, Path(path), frames=frames, choices=choices, evidence=evidence).to_json()


def analyze_file(analyzer, item: BatchFile, options: dict[str, Any], choices: dict | None = None) -> dict[str, Any]:
    """One JSON line. Never raises for a bad file: it is an ``error`` line with a sentence saying why."""
    from detectors.faces import FaceError

    from .loading import short_reason

    record: dict[str, Any] = {"path": item.path, "kind": item.kind, "status": "ok", "error": None, "message": "",
                              "size": None, "mtime_ns": None, "options": options, "report": None}
    started = time.perf_counter()
    try:
        record["size"], record["mtime_ns"] = _stamp(item.path)
        if item.kind == "other":
            record.update(status="skipped", message=f"Not a photo or video by its extension "
                                                    f"({Path(item.path).suffix or 'none'}).")
        elif item.kind == "photo":
            record["report"] = analyze_photo(analyzer, item.path, choices, options["evidence"])
        else:
            record["report"] = analyze_clip(analyzer, item.path, options["frames"], choices, options["evidence"])
    except FaceError as exc:
        record.update(status="error", error=type(exc).__name__, message=str(exc))
    except OSError as exc:
        record.update(status="error", error=type(exc).__name__,
                      message=f"This file could not be read ({exc.strerror or exc}).")
    except Exception as exc:  # one bad file must not stop the run
        log.exception("%s failed", item.path)
        record.update(status="error", error=type(exc).__name__,
                      message=f"This file could not be analysed ({short_reason(exc)}).")
    record["seconds"] = round(time.perf_counter() - started, 3)
    return record


def _stamp(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


# ---- the JSON lines file ----------------------------------------------------------------------
def read_records(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a JSON lines file; a last line cut short (no newline, bad JSON) is dropped."""
    if not path.exists():
        return []
    records = []
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break  # killed mid-write
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict) and "path" in record:
                records.append(record)
    return records


def part_files(out: Path) -> list[Path]:
    """``OUT.part-RANK`` files, by rank (also those of an earlier run with more processes)."""
    parts = out.parent.glob(out.name + PART_SUFFIX + "*")
    return sorted((p for p in parts if p.name[len(out.name) + len(PART_SUFFIX):].isdigit()),
                  key=lambda p: int(p.name[len(out.name) + len(PART_SUFFIX):]))


def merge(out: Path, files: list[BatchFile]) -> int:
    """``OUT`` and its parts into ``OUT`` (one line per path, the newest; input order), parts removed.

    Written to a temporary file and renamed, so a kill here loses nothing."""
    parts = part_files(out)
    by_path: dict[str, dict[str, Any]] = {}
    for source in [out, *parts]:
        for record in read_records(source):
            by_path.pop(record["path"], None)
            by_path[record["path"]] = record
    order = {f.path: i for i, f in enumerate(files)}
    lines = sorted(by_path.values(), key=lambda r: (0, order[r["path"]]) if r["path"] in order else (1, 0))
    tmp = out.with_name(out.name + ".merging")
    with open(tmp, "w", encoding="utf-8") as f:
        for record in lines:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    for p in parts:
        p.unlink(missing_ok=True)
    return len(lines)


def is_done(record: dict[str, Any], item: BatchFile, options: dict[str, Any]) -> bool:
    """Recorded for this very file (path, size, modification time) with the same options."""
    try:
        size, mtime = _stamp(item.path)
    except OSError:
        return False
    return (record.get("path") == item.path and record.get("size") == size and record.get("mtime_ns") == mtime
            and record.get("options") == options)


# ---- the run ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchOptions:
    """What every line was analysed with (recorded in each line, so a resume with other options redoes it)."""

    frames: int = 16
    families: tuple[str, ...] = ()  # empty = every built-in family
    sources: tuple[tuple[str, str], ...] = ()  # (family, source)
    evidence: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"frames": self.frames, "detectors": list(self.families), "sources": dict(self.sources),
                "evidence": self.evidence}


def make_analyzer(options: BatchOptions, device: Any = None):
    """The engine with the chosen families, each model loaded now (and moved to ``device``)."""
    from detectors.registry import TEST_FAMILIES

    from .running import Analyzer, Choice

    include_test = any(f in TEST_FAMILIES for f in options.families)
    analyzer = Analyzer(include_test=include_test, families=options.families or None)
    sources = dict(options.sources)
    choices = {slot.family: Choice(True, sources.get(slot.family, "")) for slot in analyzer.slots}
    for slot in analyzer.slots:
        loaded = analyzer.loaded(slot.family, choices[slot.family].source)
        if slot.family in sources and loaded.message:
            raise BatchError(f"--source {slot.family}={sources[slot.family]}: {loaded.message}")
        if loaded.message:
            print(f"{slot.family}: {loaded.message}", file=sys.stderr)
        if loaded.model is not None and device is not None and str(device) != "cpu":
            loaded.model.to(device)
    return analyzer, choices


def run_batch(inputs: list[str | Path], out: str | Path, options: BatchOptions = BatchOptions(), *,
              cpu: bool = False, progress: bool = True) -> dict[str, int]:
    """Analyse every file not yet in ``out``; this process's share when launched by Accelerate.

    Returns ``done`` (files already recorded before this run) and, on the main process, the lines
    of all the input files by status (``ok``, ``error``, ``skipped``; elsewhere this process's own)."""
    from accelerate import PartialState
    from tqdm.auto import tqdm

    state = PartialState(cpu=cpu)
    rank, world = state.process_index, state.num_processes
    out = Path(out).absolute()
    files = collect_files(inputs, exclude=[out])
    if state.is_main_process:
        out.parent.mkdir(parents=True, exist_ok=True)
        merge(out, files)  # fold in the parts of a killed run, drop a cut last line
    state.wait_for_everyone()
    opts = options.to_json()
    recorded = {r["path"]: r for r in read_records(out)}
    pending = [f for f in files if not (f.path in recorded and is_done(recorded[f.path], f, opts))]
    mine = pending[rank::world]
    counts = {"ok": 0, "error": 0, "skipped": 0, "done": len(files) - len(pending)}
    if state.is_main_process:
        kinds = {k: sum(f.kind == k for f in files) for k in ("photo", "video", "other")}
        print(f"{len(files)} files ({kinds['photo']} photos, {kinds['video']} videos, {kinds['other']} other); "
              f"{counts['done']} already in {out.name}, {len(pending)} to analyse"
              + (f" over {world} processes" if world > 1 else ""), file=sys.stderr)
    if pending:  # every process loads (even one with nothing left), so a bad --source stops them all alike
        analyzer, choices = make_analyzer(options, state.device)
    if mine:
        part = out.with_name(f"{out.name}{PART_SUFFIX}{rank}")
        with open(part, "a", encoding="utf-8") as f, \
                tqdm(total=len(mine), unit="file", desc=f"process {rank}" if world > 1 else "files",
                     position=rank, disable=not progress, dynamic_ncols=True, file=sys.stderr) as bar:
            for item in mine:
                bar.set_postfix_str(Path(item.path).name, refresh=True)
                record = analyze_file(analyzer, item, opts, choices)
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                f.flush()
                counts[record["status"]] += 1
                bar.update(1)
    if world > 1:
        print(f"process {rank}: {len(mine)} files analysed", file=sys.stderr)
    state.wait_for_everyone()
    if state.is_main_process:
        n = merge(out, files)
        wanted = {f.path for f in files}
        statuses = [r["status"] for r in read_records(out) if r["path"] in wanted]
        counts.update({k: statuses.count(k) for k in ("ok", "error", "skipped")})
        print(f"{out}: {n} lines", file=sys.stderr)
    return counts


# ---- command line -----------------------------------------------------------------------------
def _family_choices() -> list[str]:
    from detectors.registry import BUILTIN_FAMILIES, TEST_FAMILIES

    return [*BUILTIN_FAMILIES, *TEST_FAMILIES]


def _sources(items: list[str], families: list[str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in items:
        family, sep, source = item.partition("=")
        if not sep or not source.strip():
            raise argparse.ArgumentTypeError(f"--source {item!r}: write FAMILY=SOURCE, e.g. lav=demo")
        if family not in families:
            raise argparse.ArgumentTypeError(f"--source {item!r}: unknown family {family!r} "
                                             f"(one of {', '.join(families)})")
        pairs.append((family, source.strip()))
    return tuple(dict(pairs).items())


def add_arguments(p: argparse.ArgumentParser) -> None:
    from detectors.faces.video import DEFAULT_FRAMES

    p.add_argument("paths", nargs="+", metavar="PATH", help="photos, videos, or folders (walked recursively)")
    p.add_argument("--out", required=True, help="the JSON lines file (appended to and resumed from)")
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                   help="frames sampled per video, 1..64 (default: %(default)s)")
    p.add_argument("--detectors", default="", metavar="FAMILIES",
                   help="comma-separated families to run (default: all built-in): " + ", ".join(_family_choices()))
    p.add_argument("--source", action="append", default=[], metavar="FAMILY=SOURCE",
                   help="a family's checkpoint: demo, a local folder or a Hub repo org/name[@revision] (repeatable)")
    evidence = p.add_mutually_exclusive_group()
    evidence.add_argument("--evidence", dest="evidence", action="store_true",
                          help="also compute each detector's explanations (slower)")
    evidence.add_argument("--no-evidence", dest="evidence", action="store_false", help="verdicts only (default)")
    p.set_defaults(evidence=False)
    p.add_argument("--cpu", action="store_true", help="run on the CPU even where a GPU is found")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def options_from(args: argparse.Namespace) -> BatchOptions:
    from detectors.faces.video import MAX_FRAMES

    families = _family_choices()
    chosen = [f.strip() for f in args.detectors.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in families]
    if unknown:
        raise argparse.ArgumentTypeError(f"--detectors: unknown {', '.join(unknown)} (one of {', '.join(families)})")
    if not 1 <= args.frames <= MAX_FRAMES:
        raise argparse.ArgumentTypeError(f"--frames must be 1..{MAX_FRAMES}, not {args.frames}")
    sources = _sources(args.source, chosen or families)
    return BatchOptions(args.frames, tuple(dict.fromkeys(chosen)), sources, args.evidence)


def _is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def run(args: argparse.Namespace) -> int:
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        print(f"no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        options = options_from(args)
    except argparse.ArgumentTypeError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        counts = run_batch(args.paths, args.out, options, cpu=args.cpu, progress=args.progress)
    except BatchError as exc:
        print(exc, file=sys.stderr)
        return 2
    if _is_main_process():
        done = f" ({counts['done']} of them from an earlier run)" if counts["done"] else ""
        print(f"{counts['ok']} analysed, {counts['error']} could not be, {counts['skipped']} skipped{done}",
              file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description="Forgery Lens from the command line.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("analyze", help=HELP, description=HELP)
    add_arguments(p)
    p.set_defaults(_run=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
