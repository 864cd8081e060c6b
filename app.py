"""Forgery Lens: five face-forgery detectors side by side, each showing why it decided.

    python app.py [--port N] [--host H] [--with-test-detector] [--families lav,rffr] [--max-queue 64]

This file is layout and callbacks only: it converts Gradio values, calls
:mod:`explain.analysis` (the pipeline), :mod:`explain.summary` (words and pictures) and
:mod:`training.lab` (the forgery lab), and formats what they return.

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
  files share one cache path, see :class:`Janitor`); the decoded photo stays only in the
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

import argparse  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402
import torch  # noqa: E402

from detectors import compute_thread  # noqa: E402
from detectors.faces import FaceError  # noqa: E402
from detectors.measured import measured_of  # noqa: E402
from detectors.source_policy import SourcePolicy, parse_allow_hub  # noqa: E402
from explain import analysis, summary  # noqa: E402
from training import lab  # noqa: E402
from ui.files import PICTURE_GRACE, Janitor, Pictures, _keep_set, _queued_files, existing_upload, upload_path  # noqa: E402,E501

log = logging.getLogger("forgery_lens.app")

ROOT = Path(__file__).resolve().parent
EXAMPLES_DIR = ROOT / "assets" / "examples"
MAX_SLOTS = 5  # explanation pictures per card
MAX_FACES = 5
DELETE_CACHE = (120, 600)
STATE_TTL = 1800
MAX_FILE_SIZE = "25mb"
CSS = """
.card {border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 8px;}
#status .error, .fl-error {border-left: 4px solid #e69f00; padding-left: 8px;}
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


@dataclass
class Card:
    """The components of one detector card."""

    family: str
    run: Any
    source: Any
    verdict: Any
    images: list = field(default_factory=list)
    texts: list = field(default_factory=list)
    state: Any = None
    probe: Any = None
    lab_image: Any = None
    lab_text: Any = None

    @property
    def outputs(self) -> list:
        return [self.verdict, *self.images, *self.texts, self.state, self.probe]


# ---- value conversion ---------------------------------------------------------------------------
def face_index(value: Any) -> int:
    try:
        return max(0, min(MAX_FACES, int(value or 1)) - 1)
    except (TypeError, ValueError):
        return 0


def error_markdown(exc: Exception) -> str:
    return f"<div class='fl-error' role='alert'>\n\n**Could not analyse this picture.** {exc}\n\n</div>"


def examples() -> tuple[list[list[str]], list[str]]:
    """Example photos and their labels from ``assets/examples/examples.json``."""
    index = EXAMPLES_DIR / "examples.json"
    if not index.is_file():
        return [], []
    items = [i for i in json.loads(index.read_text()) if (EXAMPLES_DIR / i["file"]).is_file()]
    return [[str(EXAMPLES_DIR / i["file"])] for i in items], [i["label"] for i in items]


# ---- the app ----------------------------------------------------------------------------------
def build_app(analyzer: analysis.Analyzer, options: Options) -> gr.Blocks:
    slots = analyzer.slots
    cards: dict[str, Card] = {}
    example_files, example_labels = examples()

    with gr.Blocks(title="Forgery Lens", delete_cache=options.delete_cache) as demo:
        gr.Markdown("# Forgery Lens\nFive face-forgery detectors from five papers look at the same face and each shows "
                    "**why** it decided. Research and teaching demo: a verdict is evidence to discuss, not proof.")
        janitor = Janitor(lambda: _keep_set(demo), options.upload_grace, busy=lambda: _queued_files(demo))
        discard = janitor.used
        picture = Pictures(janitor, options.picture_grace)
        prepared = gr.State(None, time_to_live=STATE_TTL)
        with gr.Tabs():
            # ---- Analyze ---------------------------------------------------------------------
            with gr.Tab("Analyze", id="analyze"):
                with gr.Row():
                    with gr.Column(scale=1):
                        photo = gr.Image(label="Photo of a face", sources=["upload", "webcam", "clipboard"],
                                         type="filepath", height=340, elem_id="photo")
                        face = gr.Number(value=1, precision=0, minimum=1, maximum=MAX_FACES, label="Face to analyse",
                                         info="The numbers drawn on the faces; 1 = the largest.", elem_id="face")
                        analyze_btn = gr.Button("Analyze", variant="primary", elem_id="analyze-btn")
                        if example_files:
                            gr.Examples(example_files, inputs=[photo], example_labels=example_labels,
                                        label="Examples: a public-domain portrait and forgeries this project "
                                              "made of it")
                    with gr.Column(scale=1):
                        faces_img = gr.Image(label="Faces found (landmarks and numbers)", interactive=False,
                                             height=340, elem_id="faces")
                        status = gr.Markdown("Upload a photo, take one with the webcam, paste one, or pick an example.",
                                             elem_id="status")
                combined_md = gr.Markdown(elem_id="combined")
                gr.Image(summary.legend_image(), show_label=False, interactive=False, container=False, height=64,
                         elem_id="legend")
                with gr.Column(elem_id="cards"):
                    for slot in slots:
                        cards[slot.family] = _card(slot, analyzer, picture)
                with gr.Accordion("Result as JSON: the `analyze` API (one call, all detectors)", open=False):
                    gr.Markdown("Scripts call `Client(url).predict(handle_file(path), api_name='/analyze')` "
                                "(gradio_client) and get this JSON plus the explanation images.")
                    report_btn = gr.Button("Run the analyze call on this photo", elem_id="report-btn")
                    report_json = gr.JSON(label="analyze: JSON result", elem_id="report-json")
                    report_gallery = gr.Gallery(label="analyze: explanation images", columns=4, height=300)

            # ---- Forgery lab -----------------------------------------------------------------
            with gr.Tab("Forgery lab", id="lab"):
                gr.Markdown("### Make a forgery, then see which detector finds it\nTick the parts of the face to forge "
                            "and a method. The forgery is made with the same generators the detectors were trained "
                            "with; each detector's map is shown beside the truth (the forged pixels) with a score.")
                lab_state = gr.State(None, time_to_live=STATE_TTL)
                with gr.Row():
                    with gr.Column(scale=1):
                        lab_photo = gr.Image(label="Face to forge", sources=["upload", "webcam", "clipboard"],
                                             type="filepath", height=300, elem_id="lab-photo")
                        use_photo_btn = gr.Button("Use the photo from the Analyze tab", size="sm")
                        if example_files:
                            gr.Examples(example_files[:1], inputs=[lab_photo], example_labels=example_labels[:1],
                                        label="Example")
                    with gr.Column(scale=1):
                        regions = gr.CheckboxGroup(
                            [(_region_label(r), r) for r in lab.LAB_REGIONS], value=["face"], label="Regions to forge",
                            info="Left and right are the person's own. 'whole face' forges the face hull.",
                            elem_id="lab-regions")
                        method = gr.Radio(list(lab.METHODS), value="self-blend", label="Method", elem_id="lab-method",
                                          info="; ".join(f"{k}: {v}" for k, v in lab.METHOD_NOTES.items()))
                        seed = gr.Number(value=0, precision=0, label="Random seed (another seed, another forgery)")
                        forge_btn = gr.Button("Make the forgery and run the detectors", variant="primary",
                                              elem_id="forge-btn")
                with gr.Row():
                    forged_img = gr.Image(label="The forgery (its face)", interactive=False, height=300,
                                          elem_id="forged")
                    truth_img = gr.Image(label="Forged pixels (yellow)", interactive=False, height=300, elem_id="truth")
                    lab_status = gr.Markdown(elem_id="lab-status")
                lab_table = gr.Markdown(elem_id="lab-table")
                for slot in slots:  # one detector per row: the zoomed maps large enough for a projector
                    with gr.Row(elem_classes=["card"], equal_height=False):
                        with gr.Column(scale=1, min_width=260):
                            cards[slot.family].lab_text = gr.Markdown(elem_id=f"lab-text-{slot.family}")
                        cards[slot.family].lab_image = gr.Image(show_label=False, interactive=False, visible=False,
                                                                format="png", scale=3,
                                                                elem_id=f"lab-{slot.family}")

            with gr.Tab("About", id="about"):
                gr.Markdown(_about(analyzer, options))

        # ---- events ------------------------------------------------------------------------------

        def decode(payload: Any, state: analysis.PreparedImage | None) -> analysis.PreparedImage:
            path = upload_path(payload)
            if state is not None and path is not None and state.key == path:
                return state
            path = existing_upload(path, "Please upload a photo first (or take one with the webcam, or pick an example).")
            return analysis.prepare(path, key=path)

        def show_faces(payload, number, state):
            if payload is None:
                return None, "Upload a photo, take one with the webcam, paste one, or pick an example.", None
            try:
                prep = decode(payload, state)
            except FaceError as exc:
                return None, error_markdown(exc), None
            i = min(face_index(number), len(prep.faces) - 1)
            return picture(analysis.faces_picture(prep, i)), _faces_status(prep, i), prep

        cleared = [None] * len(slots)  # the previous photo's results, so progress counts this photo's

        def start(payload, number, state):
            try:
                prep = decode(payload, state)
            except FaceError as exc:
                return None, error_markdown(exc), None, "", *cleared
            except Exception as exc:  # noqa: BLE001 - shown, logged, the app keeps serving
                log.exception("decoding failed")
                return None, error_markdown(exc), None, "", *cleared
            finally:
                discard(upload_path(payload))
            i = min(face_index(number), len(prep.faces) - 1)
            note = f" Running {len(slots)} detectors: each card fills in as soon as its detector is done."
            return picture(analysis.faces_picture(prep, i)), _faces_status(prep, i) + note, prep, "", *cleared

        states = [cards[s.family].state for s in slots]
        started = analyze_btn.click(start, [photo, face, prepared], [faces_img, status, prepared, combined_md, *states],
                                    api_name="prepare", preprocess=False, concurrency_id="faces",
                                    concurrency_limit=2)
        photo.change(show_faces, [photo, face, prepared], [faces_img, status, prepared], api_name="faces",
                     preprocess=False, concurrency_id="faces", concurrency_limit=2)
        face.input(show_faces, [photo, face, prepared], [faces_img, status, prepared], api_name="select_face",
                   preprocess=False, concurrency_id="faces", trigger_mode="always_last")
        for slot in slots:
            card = cards[slot.family]
            limit = 1 if slot.concurrency_group == "vlm" else options.cnn_concurrency
            started.then(_card_fn(analyzer, slot, picture), [prepared, face, card.run, card.source], card.outputs,
                         api_name=f"detect_{slot.family}", concurrency_id=slot.concurrency_group,
                         concurrency_limit=limit, preprocess=False).then(
                _progress, [prepared, face, *states], [combined_md, status], api_name=False, queue=False)

        def analyze(image, face, *choices):
            """One call, all chosen detectors: the JSON result and the explanation images."""
            started_at = time.perf_counter()
            path = upload_path(image)
            try:
                prep = analysis.prepare(existing_upload(path, "No image was sent."))
            except FaceError as exc:
                raise gr.Error(str(exc), title=type(exc).__name__) from None
            finally:
                discard(path)
            i = face_index(face)
            results = list(analyzer.run(prep, i, _choices(slots, choices)))
            report, gallery = analysis.report(results, prep, i)
            files = [(picture(img), caption) for img, caption in gallery]
            report["seconds"] = round(time.perf_counter() - started_at, 3)
            return report, files

        choice_inputs = [c for s in slots for c in (cards[s.family].run, cards[s.family].source)]
        names = ["image", "face"] + [f"{k}_{s.family}" for s in slots for k in ("run", "source")]
        analyze.__signature__ = _signature(names)
        report_btn.click(analyze, [photo, face, *choice_inputs], [report_json, report_gallery], api_name="analyze",
                         preprocess=False, concurrency_id="cnn", concurrency_limit=options.cnn_concurrency)

        # ---- forgery lab events ------------------------------------------------------------------
        def use_photo(state):
            if state is None:
                raise gr.Error("Analyze a photo first, or upload one here.")
            return picture(state.rgb)

        use_photo_btn.click(use_photo, [prepared], [lab_photo], api_name="lab_use_photo")

        def forge(payload, chosen, how, seed_value):
            path = upload_path(payload)
            try:
                prep = analysis.prepare(existing_upload(path, "Pick a face to forge first (upload one, or use the "
                                                                    "example)."))
                made = lab.make_lab_forgery(prep.rgb, prep.faces[0], how, chosen or ["face"], int(seed_value or 0))
            except (FaceError, lab.LabError) as exc:
                return None, None, error_markdown(exc), None
            finally:
                discard(path)
            forged = analysis.PreparedImage(made.image, [prep.faces[0]])
            y0, y1, x0, x1 = summary.face_box(prep.faces[0].bbox, made.image.shape[:2])  # the face, big
            return (picture(made.image[y0:y1, x0:x1], min_side=300),
                    picture(summary.mask_picture(made.truth[y0:y1, x0:x1]), min_side=300),
                    f"**{made.description}**", (forged, made.truth))

        def lab_detect(state, *choices):
            outputs = [c.lab_image for c in (cards[s.family] for s in slots)]
            texts = [c.lab_text for c in (cards[s.family] for s in slots)]
            if state is None:
                yield {**{o: gr.update(visible=False) for o in outputs}, **{t: "" for t in texts}, lab_table: ""}
                return
            forged, truth = state
            rows = []
            picks = _choices(slots, choices)
            for slot, out, text in zip(slots, outputs, texts):
                result = analyzer.run_one(slot.family, forged, 0, picks.get(slot.family, analysis.Choice()))
                crop_truth, maps = analysis.lab_maps(result, truth)
                rows.append((result, maps))
                figure = picture(summary.lab_figure(result.aligned.image, crop_truth, maps)) if result.ok else None
                yield {out: gr.update(value=figure, visible=figure is not None),
                       text: summary.lab_markdown(result, maps), lab_table: summary.lab_table(rows)}

        forge_btn.click(forge, [lab_photo, regions, method, seed], [forged_img, truth_img, lab_status, lab_state],
                        api_name="forge", preprocess=False, concurrency_id="faces").then(
            lab_detect, [lab_state, *choice_inputs],
            [lab_table, *(cards[s.family].lab_image for s in slots), *(cards[s.family].lab_text for s in slots)],
            api_name="lab_detect", concurrency_id="cnn", concurrency_limit=options.cnn_concurrency)

    demo.queue(max_size=options.max_queue, default_concurrency_limit=2)
    return demo


def _card(slot: analysis.DetectorSlot, analyzer: analysis.Analyzer, picture: Pictures) -> Card:
    loaded = analyzer.loaded(slot.family)
    # One detector per row: its verdict and measured accuracy on the left, its pictures large on the
    # right, so five detectors never leave an orphan card and a projector shows the maps big.
    with gr.Row(elem_classes=["card"], elem_id=f"card-{slot.family}", equal_height=False):
        with gr.Column(scale=1, min_width=300):
            gr.Markdown(f"### {loaded.title}\n{loaded.paper}")
            available = loaded.model is not None
            installed = slot.name is not None
            run = gr.Checkbox(value=True, label="Run", visible=installed, elem_id=f"run-{slot.family}")
            source = gr.Textbox(value="", label="Checkpoint", visible=installed,
                                placeholder=analyzer.policy.placeholder(slot.default_source),
                                max_lines=1, elem_id=f"source-{slot.family}",
                                info=f"Empty = the demo checkpoint. {analyzer.policy.describe(markdown=False)} "
                                     "Failing sources fall back to it, with a note.")
            note = f"\n\n> **Note:** {loaded.message}" if loaded.message else ""
            accuracy = (summary.accuracy_markdown(analysis.measured_json(measured_of(loaded.model.config)))
                        if available else "")
            first = f"Waiting for a photo.\n\n{accuracy}{note}" if available else f"### Not available{note}"
            verdict = gr.Markdown(first, elem_id=f"verdict-{slot.family}")
        images, texts = [], []
        with gr.Column(scale=3):
            with gr.Row(equal_height=False):
                for i in range(MAX_SLOTS):
                    with gr.Column(min_width=170, elem_classes=["slot"]):
                        images.append(gr.Image(visible=False, interactive=False, format="png", height=260,
                                               show_label=False, elem_id=f"img-{slot.family}-{i}"))
                        texts.append(gr.Markdown(visible=False, elem_id=f"text-{slot.family}-{i}"))
        state = gr.State(None, time_to_live=STATE_TTL)
        probe = gr.State(None, time_to_live=STATE_TTL)
    card = Card(slot.family, run, source, verdict, images, texts, state, probe)
    for i, image in enumerate(images):
        image.select(_probe_fn(card, i, picture), [probe], [*images, *texts], api_name=f"patch_{slot.family}_{i}",
                     api_visibility="undocumented", queue=False)
    return card


def _card_fn(analyzer: analysis.Analyzer, slot: analysis.DetectorSlot, picture: Pictures):
    def run_card(state, number, run, source):
        if state is None:
            hidden = [gr.update(visible=False)] * (2 * MAX_SLOTS)
            return ["No face to analyse.", *hidden, None, None]
        result = analyzer.run_one(slot.family, state, face_index(number), analysis.Choice(bool(run), source or ""))
        return _card_values(result, picture)

    run_card.__name__ = f"detect_{slot.family}"
    return run_card


def _card_values(result: analysis.DetectorResult, picture: Pictures) -> list:
    shown = result.explanations[:MAX_SLOTS]
    images = [gr.update(value=picture(e.image, min_side=256), label=e.title, visible=True) for e in shown]
    texts = [gr.update(value=summary.explanation_markdown(e), visible=True) for e in shown]
    hidden = [gr.update(value=None, visible=False)] * (MAX_SLOTS - len(shown))
    verdict = summary.verdict_markdown(result)
    if len(result.explanations) > MAX_SLOTS:
        verdict += f"\n\n{len(result.explanations) - MAX_SLOTS} more pictures are in the JSON report."
    probe = analysis.patch_probe(result, MAX_SLOTS)
    if probe is not None:
        texts[probe.target] = gr.update(value=texts[probe.target]["value"] + "\n\n*Click a patch on the face pictures "
                                        "to compare every patch with it.*", visible=True)
    return [verdict, *images, *hidden, *texts, *hidden, result.to_json(), probe]


def _probe_fn(card: Card, slot_index: int, picture: Pictures):
    """A click on a crop-sized picture redraws the patch-similarity grid for the clicked patch."""

    def probe_patch(probe: analysis.PatchProbe | None, evt: gr.SelectData):
        keep = [gr.update()] * (2 * MAX_SLOTS)
        if probe is None or not probe.clickable[slot_index] or not isinstance(evt.index, (list, tuple)):
            return keep
        patch = probe.patch_at(*evt.index[:2])
        grid = probe.similarity(patch)
        keep[probe.target] = gr.update(value=picture(summary.similarity_picture(grid, patch)))
        keep[MAX_SLOTS + probe.target] = gr.update(value=(
            f"**Patch similarity grid.** How much each patch's learned features resemble those of the patch you "
            f"clicked (row {patch[0] + 1}, column {patch[1] + 1}). Forged patches are trained to look alike and "
            f"unlike real ones: a bright cluster marks one manipulated area. Mean similarity {grid.mean():.2f}."))
        return keep

    probe_patch.__name__ = f"patch_{card.family}_{slot_index}"
    return probe_patch


def _progress(prep: analysis.PreparedImage | None, number: Any, *items: dict | None) -> tuple[str, str]:
    """The combined verdict so far, and a status line that ends when the last card is in."""
    done = [i for i in items if i]
    if prep is None or not done:
        return "", gr.update()
    faces = _faces_status(prep, min(face_index(number), len(prep.faces) - 1))
    if len(done) < len(items):
        return summary.combined_markdown(done), f"{faces} Running detectors: {len(done)} of {len(items)} done\u2026"
    return summary.combined_markdown(done), f"{faces} All {len(items)} detectors are done."


def _choices(slots: list[analysis.DetectorSlot], values: tuple) -> dict[str, analysis.Choice]:
    """(run, source) pairs in slot order -> choices; missing values mean "run the default"."""
    out = {}
    for i, slot in enumerate(slots):
        run = values[2 * i] if 2 * i < len(values) else True
        source = values[2 * i + 1] if 2 * i + 1 < len(values) else ""
        out[slot.family] = analysis.Choice(True if run is None else bool(run), source or "")
    return out


def _signature(names: list[str]) -> inspect.Signature:
    """Named API parameters (``run_lav``, ``source_lav``, ...) for a function taking ``*values``."""
    return inspect.Signature([inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names])


def _faces_status(prep: analysis.PreparedImage, index: int) -> str:
    n = len(prep.faces)
    if n == 1:
        return "Found **1 face**."
    return f"Found **{n} faces**; analysing face **{index + 1}** (change *Face to analyse* and press Analyze again)."


def _region_label(region: str) -> str:
    return "whole face" if region == "face" else region.replace("_", " ")


def _about(analyzer: analysis.Analyzer, options: Options) -> str:
    lines = ["### Detectors in this build", "| Detector | Paper | Checkpoint |", "| --- | --- | --- |"]
    measured = []
    for slot in analyzer.slots:
        loaded = analyzer.loaded(slot.family)
        where = f"`{loaded.source}`" if loaded.model is not None else f"missing: {loaded.message}"
        lines.append(f"| {loaded.title} | {loaded.paper} | {where} |")
        if loaded.model is not None:
            measured.append((loaded.title, analysis.measured_json(measured_of(loaded.model.config))))
    lines += ["", "### How well each checkpoint detects, by kind of fake",
              "Measured AUC (0.5 = guessing, 1 = perfect, below 0.5 = worse than guessing) on faces none of them was "
              "trained on, from each checkpoint's recorded evaluation. Kinds not listed (diffusion-generated faces, "
              "real face swaps, attribute edits) were not measured: expect less.", "",
              summary.accuracy_table(measured)]
    lines += [
        "", "### Your photos",
        f"Uploads are deleted {options.upload_grace:g} s after the request that used them; pictures made for you are "
        f"removed from the server's cache within {_every_age_text(options.delete_cache)}. "
        "Nothing is sent anywhere.",
        "", "### Checkpoints you can load",
        analyzer.policy.describe() + " Type one in a card's *Checkpoint* box; a source that fails to load falls back "
        "to the demo checkpoint with a note" + ("." if analyzer.policy.detailed_errors else
                                               " that gives the reason in one sentence (details stay in the server's "
                                               "log)."),
        "", "### Reading the maps",
        "All maps use viridis or cividis (readable with colour-blindness). Each map is coloured on a fixed range "
        "measured on 200 real faces the checkpoint was trained on: dark = the median real face, yellow = the top 1% "
        "of real faces. So a real face should look mostly dark, and a bright area is unusual for a real face; it is "
        "not proof of a forgery (the demo detectors' maps separate forgeries weakly). A map without a stored range "
        "says so in its caption. Every picture has a sentence beside it saying what it shows.",
        "", "### Licence", "Demo weights were trained on FFHQ faces (CC BY-NC-SA 4.0): research and teaching only.",
    ]
    return "\n".join(lines)


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
    analyzer = analysis.Analyzer(include_test=options.include_test, families=options.families, policy=options.policy)
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


def _every_age_text(sweep: tuple[int, int]) -> str:
    """How long Gradio keeps a cached file at most, in words ("10\u201312 minutes")."""
    every, age = sweep
    return f"{age // 60}\u2013{(every + age) // 60} minutes" if age >= 60 else f"{age}\u2013{every + age} seconds"


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


def _warm_up(analyzer: analysis.Analyzer, path: str) -> None:
    try:
        log.info("warm-up pass done in %.1f s", analyzer.warm_up(path))
    except Exception:  # noqa: BLE001 - warm-up is best effort
        log.exception("warm-up failed")


if __name__ == "__main__":
    main()
