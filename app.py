"""Forgery Lens: five face-forgery detectors side by side, each showing why it decided.

    python app.py [--port N] [--host H] [--with-test-detector] [--families lav,rffr] [--max-queue 64]

This file parses the options, loads the models, composes the page from the tabs in :mod:`ui`
(each tab lays itself out and wires its own events) and launches it. The tabs call
:mod:`pipeline` (load, run, combine, report), :mod:`explain.summary` (words and pictures) and
:mod:`training.lab` (the forgery lab), and format what they return.

Serving policy
- Models load once at start (one per family, cached per (detector, source)); a source box that
  fails to load falls back to the demo checkpoint with a note on the card.
- Queue: each detector card is its own event. AntifakePrompt (the VLM) runs in concurrency
  group ``vlm`` at 1; the CNN detectors (and the one-call ``analyze`` API) share group ``cnn``
  (``--cnn-concurrency``, default 2 on a 2-core Space). At most ``--max-queue`` (default 64)
  requests wait; beyond that Gradio answers "This application is currently busy. Please try again."
  The model calls themselves all run on one compute thread with ``--threads`` torch threads
  (default 1; see ``detectors/compute_thread.py``), whichever worker thread an event runs on.
- Uploads are deleted from Gradio's cache ``--upload-grace`` seconds (default 60) after the
  request that used them, and never while a queued request still refers to them (identical
  files share one cache path, see :class:`ui.files.Janitor`); the decoded photo stays only in the
  visitor's session state, which expires after ``STATE_TTL`` seconds. Everything else Gradio
  caches (outputs, uploads never analysed) is removed by ``gr.Blocks(delete_cache=(120, 600))``:
  every 2 minutes, files older than 10 minutes.
- No network at start: ``GRADIO_ANALYTICS_ENABLED=False`` and ``HF_HUB_DISABLE_TELEMETRY=1``
  are set here; ``HF_HUB_OFFLINE=1`` is honoured by the Hub loading code.
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import logging
import threading
import time
from dataclasses import dataclass, field

import gradio as gr
import torch

import pipeline
from detectors import compute_thread
from detectors.source_policy import SourcePolicy, parse_allow_hub
from ui.about_tab import build_about_tab
from ui.analyze_tab import build_analyze_tab
from ui.files import PICTURE_GRACE, Janitor, Pictures, keep_set, queued_files
from ui.lab_tab import build_lab_tab
from ui.values import STATE_TTL, examples
from ui.video_tab import build_video_tab

log = logging.getLogger("forgery_lens.app")

DELETE_CACHE = (120, 600)
MAX_FILE_SIZE = "100mb"  # a 30 s phone clip
CSS = """
.card {border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 8px;}
#status .error, .fl-error {border-left: 4px solid #e69f00; padding-left: 8px;}
#about-text th {word-break: normal; overflow-wrap: normal;}  /* headers break between words only */
"""


@dataclass
class Options:
    include_test: bool = False
    families: list[str] | None = None
    max_queue: int = 64
    cnn_concurrency: int = 2
    threads: int = 1
    warm_up: bool = True
    upload_grace: float = 60.0
    picture_grace: float = PICTURE_GRACE
    delete_cache: tuple[int, int] = DELETE_CACHE
    #: Which checkpoint sources visitors may type (see ``detectors/source_policy.py``).
    policy: SourcePolicy = field(default_factory=SourcePolicy.local_use)


# ---- the app ----------------------------------------------------------------------------------
def build_app(analyzer: pipeline.Analyzer, options: Options) -> gr.Blocks:
    """The page: a header, the four tabs (each builder wires its own events), the queue."""
    with gr.Blocks(title="Forgery Lens", delete_cache=options.delete_cache) as demo:
        gr.Markdown("# Forgery Lens\nFive face-forgery detectors from five papers look at the same face and each shows "
                    "**why** it decided. Research and teaching demo: a verdict is evidence to discuss, not proof.")
        janitor = Janitor(lambda: keep_set(demo), options.upload_grace, busy=lambda: queued_files(demo))
        picture = Pictures(janitor, options.picture_grace)
        prepared = gr.State(None, time_to_live=STATE_TTL)  # the visitor's decoded photo, shared by both tabs
        with gr.Tabs():
            analyze = build_analyze_tab(analyzer, prepared, picture, janitor.used, options.cnn_concurrency)
            build_video_tab(analyzer, picture, janitor.used, options.cnn_concurrency, analyze.choice_inputs)
            build_lab_tab(analyzer, analyze, prepared, picture, janitor.used, options.cnn_concurrency)
            build_about_tab(analyzer, options.upload_grace, options.delete_cache)
    demo.queue(max_size=options.max_queue, default_concurrency_limit=2)
    return demo


# ---- command line -----------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description="Forgery Lens app")
    p.add_argument("--host", default=env("GRADIO_SERVER_NAME"),
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 on a Space)")
    p.add_argument("--port", type=int, default=int(env("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--with-test-detector", action="store_true",
                   default=env("FORGERY_LENS_TEST_DETECTOR", "") in ("1", "true", "yes"),
                   help="add the hidden tiny_test detector with random weights "
                        "(tests; env FORGERY_LENS_TEST_DETECTOR=1)")
    p.add_argument("--families", default=env("FORGERY_LENS_FAMILIES", ""),
                   help="comma-separated families to show, e.g. lav,rffr (env FORGERY_LENS_FAMILIES; default all)")
    p.add_argument("--max-queue", type=int, default=int(env("FORGERY_LENS_MAX_QUEUE", "64")))
    p.add_argument("--cnn-concurrency", type=int, default=int(env("FORGERY_LENS_CNN_CONCURRENCY", "2")))
    p.add_argument("--threads", type=int, default=int(env("FORGERY_LENS_THREADS", "1")),
                   help="torch CPU threads for the models (env FORGERY_LENS_THREADS). 1 by default: on 2 cores a "
                        "second thread saves ~10%% when the machine is idle but makes the models 2-3x slower "
                        "once anything else runs (a browser on the same laptop, the next upload's face search)")
    p.add_argument("--no-warm-up", action="store_true", help="skip the background warm-up pass after start")
    p.add_argument("--upload-grace", type=float, default=float(env("FORGERY_LENS_UPLOAD_GRACE", "60")),
                   help="seconds after its last use an upload is deleted from Gradio's cache")
    p.add_argument("--picture-grace", type=float, default=float(env("FORGERY_LENS_PICTURE_GRACE", str(PICTURE_GRACE))),
                   help="seconds the app keeps its own copy of a picture it made (Gradio serves its cached copy)")
    p.add_argument("--cache-sweep", default=env("FORGERY_LENS_CACHE_SWEEP", ",".join(map(str, DELETE_CACHE))),
                   metavar="EVERY,AGE", help="every EVERY seconds, delete files Gradio cached more than AGE seconds "
                                             "ago (default %(default)s)")
    # Which checkpoint sources visitors may type. Defaults: local use (127.0.0.1 / localhost / ::1 and no
    # SPACE_ID) = local folders, any Hub repo, 2048 MB; public = no folders, forgery-lens repos, 200 MB.
    local = p.add_mutually_exclusive_group()
    local.add_argument("--allow-local-checkpoints", dest="allow_local", action="store_const", const=True, default=None,
                       help="let visitors load checkpoints from server folders (default: only for local use)")
    local.add_argument("--no-local-checkpoints", dest="allow_local", action="store_const", const=False,
                       help="refuse server folders as checkpoint sources (the default when serving publicly)")
    p.add_argument("--allow-hub", default=env("FORGERY_LENS_ALLOW_HUB"), metavar="ORG_OR_REPO[,..]",
                   help="Hub organisations (org or org/*) and repos (org/name) visitors may load; 'none' = no Hub "
                        "sources, '*' = any (local use only). Env FORGERY_LENS_ALLOW_HUB; default any for local "
                        "use, forgery-lens when public")
    p.add_argument("--max-download-mb", type=float, default=env("FORGERY_LENS_MAX_DOWNLOAD_MB"), metavar="N",
                   help="largest checkpoint download, in MB, checked before downloading (env "
                        "FORGERY_LENS_MAX_DOWNLOAD_MB; default 2048 for local use, 200 when public)")
    args = p.parse_args(argv)
    try:
        hub = None if args.allow_hub is None else parse_allow_hub(
            "" if args.allow_hub.strip().lower() == "none" else args.allow_hub)
        mb = None if args.max_download_mb is None else float(args.max_download_mb)
        args.policy = SourcePolicy.for_server(args.host, env("SPACE_ID"), args.allow_local, hub, mb)
    except ValueError as exc:
        p.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = parse_args(argv)
    options = Options(include_test=args.with_test_detector,
                      families=[f.strip() for f in args.families.split(",") if f.strip()] or None,
                      max_queue=args.max_queue, cnn_concurrency=args.cnn_concurrency, threads=args.threads,
                      warm_up=not args.no_warm_up, upload_grace=args.upload_grace,
                      picture_grace=args.picture_grace, delete_cache=_pair(args.cache_sweep), policy=args.policy)
    torch.set_num_threads(max(1, options.threads))
    compute_thread.start()  # every model call on one thread: see detectors/compute_thread.py
    _limit_malloc_arenas()
    started = time.perf_counter()
    analyzer = pipeline.Analyzer(include_test=options.include_test, families=options.families, policy=options.policy)
    log.info("checkpoint sources: %s", options.policy)
    for loaded in analyzer.load_defaults():
        log.info("%s: %s", loaded.slot.family, loaded.source or loaded.message)
    demo = build_app(analyzer, options)
    if options.warm_up:
        files, _ = examples()
        if files:
            threading.Thread(target=_warm_up, args=(analyzer, files[0][0]), daemon=True).start()
    log.info("app built in %.1f s", time.perf_counter() - started)
    demo.launch(server_name=args.host, server_port=args.port, max_file_size=MAX_FILE_SIZE, ssr_mode=False,
                theme=gr.themes.Soft(), css=CSS, footer_links=["api", "settings"])


def _pair(text: str) -> tuple[int, int]:
    try:
        every, age = (int(v) for v in text.split(","))
    except ValueError:
        raise SystemExit(f"--cache-sweep takes two whole numbers of seconds, EVERY,AGE (got {text!r})") from None
    return every, age


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each worker thread its own heap arena; Gradio's thread pool would then grow
    memory with every new thread that runs a model. Two arenas keep memory flat under load."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def _warm_up(analyzer: pipeline.Analyzer, path: str) -> None:
    try:
        log.info("warm-up pass done in %.1f s", analyzer.warm_up(path))
    except Exception:  # warm-up is best effort
        log.exception("warm-up failed")


if __name__ == "__main__":
    main()
