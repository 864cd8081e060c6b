"""The Analyze tab: photo in, faces found, one card per detector, the combined verdict, the JSON API.

Events: ``prepare`` (the Analyze button decodes the photo and finds its faces), then each card's
``detect_<family>`` (see :mod:`ui.cards`) and the combined verdict as cards come in; ``faces`` /
``select_face`` redraw the faces picture; ``analyze`` is the one-call API (all detectors, JSON
and pictures).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

import pipeline
from detectors.faces import FaceError
from explain import summary

from . import texts
from .cards import Card, build_card, card_fn
from .files import Pictures, existing_upload, upload_path
from .values import MAX_FACES, error_markdown, examples, face_index, read_choices, signature

log = logging.getLogger("forgery_lens.app")


@dataclass
class AnalyzeTab:
    """What the other tabs use from this one."""

    photo: gr.Image
    face: gr.Number
    cards: dict[str, Card]
    choice_inputs: list  # each card's (run, source) components, in slot order


def build_analyze_tab(analyzer: pipeline.Analyzer, prepared: gr.State, picture: Pictures,
                      discard: Callable[[str | None], None], cnn_concurrency: int) -> AnalyzeTab:
    """Lay out the tab inside the open ``gr.Tabs`` and wire its events. ``prepared`` holds the
    visitor's decoded photo (the forgery lab reads it too); ``discard`` hands an upload to the janitor."""
    slots = analyzer.slots
    cards: dict[str, Card] = {}
    example_files, example_labels = examples()
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
                cards[slot.family] = build_card(slot, analyzer, picture)
        with gr.Accordion("Result as JSON: the `analyze` API (one call, all detectors)", open=False):
            gr.Markdown("Scripts call `Client(url).predict(handle_file(path), api_name='/analyze')` "
                        "(gradio_client) and get this JSON plus the explanation images.")
            report_btn = gr.Button("Run the analyze call on this photo", elem_id="report-btn")
            report_json = gr.JSON(label="analyze: JSON result", elem_id="report-json")
            report_gallery = gr.Gallery(label="analyze: explanation images", columns=4, height=300)

    def decode(payload: Any, state: pipeline.PreparedImage | None) -> pipeline.PreparedImage:
        path = upload_path(payload)
        if state is not None and path is not None and state.key == path:
            return state
        path = existing_upload(path, "Please upload a photo first (or take one with the webcam, or pick an example).")
        return pipeline.prepare(path, key=path)

    def show_faces(payload, number, state):
        if payload is None:
            return None, "Upload a photo, take one with the webcam, paste one, or pick an example.", None
        try:
            prep = decode(payload, state)
        except FaceError as exc:
            return None, error_markdown(exc), None
        i = min(face_index(number), len(prep.faces) - 1)
        return picture(pipeline.faces_picture(prep, i)), faces_status(prep, i), prep

    cleared = [None] * len(slots)  # the previous photo's results, so progress counts this photo's

    def start(payload, number, state):
        try:
            prep = decode(payload, state)
        except FaceError as exc:
            return None, error_markdown(exc), None, "", *cleared
        except Exception as exc:  # shown, logged, the app keeps serving
            log.exception("decoding failed")
            return None, error_markdown(exc), None, "", *cleared
        finally:
            discard(upload_path(payload))
        i = min(face_index(number), len(prep.faces) - 1)
        note = f" Running {len(slots)} detectors: each card fills in as soon as its detector is done."
        return picture(pipeline.faces_picture(prep, i)), faces_status(prep, i) + note, prep, "", *cleared

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
        limit = 1 if slot.concurrency_group == "vlm" else cnn_concurrency
        started.then(card_fn(analyzer, slot, picture), [prepared, face, card.run, card.source], card.outputs,
                     api_name=f"detect_{slot.family}", concurrency_id=slot.concurrency_group,
                     concurrency_limit=limit, preprocess=False).then(
            progress, [prepared, face, *states], [combined_md, status], api_name=False, queue=False)

    def analyze(image, face, *choices):
        """One call, all chosen detectors: the JSON result and the explanation images."""
        started_at = time.perf_counter()
        path = upload_path(image)
        try:
            prep = pipeline.prepare(existing_upload(path, "No image was sent."))
        except FaceError as exc:
            raise gr.Error(str(exc), title=type(exc).__name__) from None
        finally:
            discard(path)
        i = face_index(face)
        results = list(analyzer.run(prep, i, read_choices(slots, choices)))
        report, gallery = pipeline.report(results, prep, i)
        files = [(picture(img), caption) for img, caption in gallery]
        report["seconds"] = round(time.perf_counter() - started_at, 3)
        return report, files

    choice_inputs = [c for s in slots for c in (cards[s.family].run, cards[s.family].source)]
    names = ["image", "face"] + [f"{k}_{s.family}" for s in slots for k in ("run", "source")]
    analyze.__signature__ = signature(names)
    report_btn.click(analyze, [photo, face, *choice_inputs], [report_json, report_gallery], api_name="analyze",
                     preprocess=False, concurrency_id="cnn", concurrency_limit=cnn_concurrency)

    return AnalyzeTab(photo, face, cards, choice_inputs)


def progress(prep: pipeline.PreparedImage | None, number: Any, *items: dict | None) -> tuple[str, str]:
    """The combined verdict so far, and a status line that ends when the last card is in."""
    done = [i for i in items if i]
    if prep is None or not done:
        return "", gr.update()
    faces = faces_status(prep, min(face_index(number), len(prep.faces) - 1))
    if len(done) < len(items):
        return texts.combined_markdown(done), f"{faces} Running detectors: {len(done)} of {len(items)} done\u2026"
    return texts.combined_markdown(done), f"{faces} All {len(items)} detectors are done."


def faces_status(prep: pipeline.PreparedImage, index: int) -> str:
    n = len(prep.faces)
    if n == 1:
        return "Found **1 face**."
    return f"Found **{n} faces**; analysing face **{index + 1}** (change *Face to analyse* and press Analyze again)."
