"""The Forgery lab tab: forge chosen parts of a face, then see which detector finds the forgery.

Events: ``lab_use_photo`` (take the Analyze tab's photo), ``forge`` (make the forgery with
:mod:`training.lab`), then ``lab_detect`` (every detector on the forgery, each map scored
against the forged pixels, rows streaming in).
"""
from __future__ import annotations

from collections.abc import Callable

import gradio as gr

import pipeline
from detectors.faces import FaceError
from explain import summary
from training import lab

from .analyze_tab import AnalyzeTab
from .files import Pictures, existing_upload, upload_path
from .texts import lab_markdown
from .texts import lab_table as lab_table_markdown
from .values import STATE_TTL, error_markdown, examples, read_choices


def build_lab_tab(analyzer: pipeline.Analyzer, analyze: AnalyzeTab, prepared: gr.State, picture: Pictures,
                  discard: Callable[[str | None], None], cnn_concurrency: int) -> None:
    """Lay out the tab inside the open ``gr.Tabs`` and wire its events; each detector's lab row
    is kept on its card (``Card.lab_text`` / ``Card.lab_image``)."""
    slots = analyzer.slots
    cards = analyze.cards
    choice_inputs = analyze.choice_inputs
    example_files, example_labels = examples()
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
                    [(region_label(r), r) for r in lab.LAB_REGIONS], value=["face"], label="Regions to forge",
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

    def use_photo(state):
        if state is None:
            raise gr.Error("Analyze a photo first, or upload one here.")
        return picture(state.rgb)

    use_photo_btn.click(use_photo, [prepared], [lab_photo], api_name="lab_use_photo")

    def forge(payload, chosen, how, seed_value):
        path = upload_path(payload)
        try:
            prep = pipeline.prepare(existing_upload(path, "Pick a face to forge first (upload one, or use the "
                                                                "example)."))
            made = lab.make_lab_forgery(prep.rgb, prep.faces[0], how, chosen or ["face"], int(seed_value or 0))
        except (FaceError, lab.LabError) as exc:
            return None, None, error_markdown(exc), None
        finally:
            discard(path)
        forged = pipeline.PreparedImage(made.image, [prep.faces[0]])
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
        picks = read_choices(slots, choices)
        for slot, out, text in zip(slots, outputs, texts):
            result = analyzer.run_one(slot.family, forged, 0, picks.get(slot.family, pipeline.Choice()))
            crop_truth, maps = lab.lab_maps(result, truth)
            rows.append((result, maps))
            figure = picture(summary.lab_figure(result.aligned.image, crop_truth, maps)) if result.ok else None
            yield {out: gr.update(value=figure, visible=figure is not None),
                   text: lab_markdown(result, maps), lab_table: lab_table_markdown(rows)}

    forge_btn.click(forge, [lab_photo, regions, method, seed], [forged_img, truth_img, lab_status, lab_state],
                    api_name="forge", preprocess=False, concurrency_id="faces").then(
        lab_detect, [lab_state, *choice_inputs],
        [lab_table, *(cards[s.family].lab_image for s in slots), *(cards[s.family].lab_text for s in slots)],
        api_name="lab_detect", concurrency_id="cnn", concurrency_limit=cnn_concurrency)


def region_label(region: str) -> str:
    return "whole face" if region == "face" else region.replace("_", " ")
