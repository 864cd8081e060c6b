"""One detector card: its checkbox, checkpoint box, verdict, pictures and charts, and the callbacks
that fill them.

Each evidence slot holds a picture (server-drawn maps and overlays) and a bar plot the browser draws
(a handful of numbers: answer probabilities, attribute heads, region scores); one of the two shows.

Each card is its own event (``detect_<family>``), so cards stream in as their detector finishes;
a click on a crop-sized picture redraws LAV's patch-similarity grid (``patch_<family>_<i>``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import pandas as pd

import pipeline
from detectors.measured import measured_of
from explain import summary
from explain.base import BarChart, Explanation

from .files import Pictures
from .texts import verdict_markdown
from .values import STATE_TTL, face_index

MAX_SLOTS = 5  # explanations per card
SLOT_HEIGHT = 260  # px, pictures and plots alike


@dataclass
class Card:
    """The components of one detector card."""

    family: str
    run: Any
    source: Any
    verdict: Any
    images: list = field(default_factory=list)
    plots: list = field(default_factory=list)
    texts: list = field(default_factory=list)
    state: Any = None
    probe: Any = None
    lab_image: Any = None  # set by the forgery lab's tab
    lab_text: Any = None

    @property
    def outputs(self) -> list:
        return [self.verdict, *self.images, *self.plots, *self.texts, self.state, self.probe]


def build_card(slot: pipeline.DetectorSlot, analyzer: pipeline.Analyzer, picture: Pictures) -> Card:
    loaded = analyzer.loaded(slot.family)
    # One detector per row: its verdict and measured accuracy on the left, its pictures large on the
    # right, so five detectors never leave an orphan card and a projector shows the maps big.
    with gr.Row(elem_classes=["card"], elem_id=f"card-{slot.family}", equal_height=False):
        with gr.Column(scale=1, min_width=340):
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
            accuracy = (summary.accuracy_markdown(pipeline.measured_json(measured_of(loaded.model.config)))
                        if available else "")
            first = f"Waiting for a photo.\n\n{accuracy}{note}" if available else f"### Not available{note}"
            verdict = gr.Markdown(first, elem_id=f"verdict-{slot.family}")
        images, plots, texts = [], [], []
        with gr.Column(scale=3), gr.Row(equal_height=False):
            for i in range(MAX_SLOTS):
                with gr.Column(min_width=170, elem_classes=["slot"]):
                    images.append(gr.Image(visible=False, interactive=False, format="png", height=SLOT_HEIGHT,
                                           show_label=False, elem_id=f"img-{slot.family}-{i}"))
                    plots.append(bar_plot(f"plot-{slot.family}-{i}"))
                    texts.append(gr.Markdown(visible=False, elem_id=f"text-{slot.family}-{i}"))
        state = gr.State(None, time_to_live=STATE_TTL)
        probe = gr.State(None, time_to_live=STATE_TTL)
    card = Card(slot.family, run, source, verdict, images, plots, texts, state, probe)
    for i, image in enumerate(images):
        image.select(_probe_fn(card, i, picture), [probe], [*images, *texts], api_name=f"patch_{slot.family}_{i}",
                     api_visibility="undocumented", queue=False)
    return card


def card_fn(analyzer: pipeline.Analyzer, slot: pipeline.DetectorSlot, picture: Pictures):
    def run_card(state, number, run, source):
        if state is None:
            hidden = [gr.update(visible=False)] * (3 * MAX_SLOTS)
            return ["No face to analyse.", *hidden, None, None]
        result = analyzer.run_one(slot.family, state, face_index(number), pipeline.Choice(bool(run), source or ""))
        return card_values(result, picture)

    run_card.__name__ = f"detect_{slot.family}"
    return run_card


def bar_plot(elem_id: str, height: int = SLOT_HEIGHT) -> gr.BarPlot:
    """A hidden bar plot that :func:`bar_plot_update` fills with a :class:`BarChart`."""
    return gr.BarPlot(visible=False, x="label", y="value", color="label", y_lim=[0, 1], colors_in_legend=[],
                      x_label_angle=-45, tooltip="all", height=height, show_label=False, elem_id=elem_id)


def bar_plot_update(chart: BarChart | None) -> dict:
    """A slot's bar plot showing ``chart``, its bars in the chart's order (the browser draws it);
    ``None`` empties and hides it."""
    if chart is None:
        return gr.update(value=None, visible=False)
    table = pd.DataFrame({"label": chart.labels, "value": chart.values})
    return gr.update(value=table, x_title=" ", y_title=chart.value_title, y_lim=list(chart.value_range),
                     sort=list(chart.labels), x_label_angle=-45 if len(chart.labels) <= 4 else -90,
                     color_map=dict(zip(chart.labels, chart.colours)), visible=True)


def _slot(e: Explanation, picture: Pictures) -> tuple[dict, dict]:
    """(picture, plot) updates of one evidence slot: the chart's plot, or else the picture."""
    if e.chart is not None:
        return gr.update(value=None, visible=False), bar_plot_update(e.chart)
    return gr.update(value=picture(e.image, min_side=256), label=e.title, visible=True), gr.update(visible=False)


def card_values(result: pipeline.DetectorResult, picture: Pictures) -> list:
    shown = result.explanations[:MAX_SLOTS]
    slots = [_slot(e, picture) for e in shown]
    images = [image for image, _ in slots]
    plots = [plot for _, plot in slots]
    texts = [gr.update(value=summary.explanation_markdown(e), visible=True) for e in shown]
    hidden = [gr.update(value=None, visible=False)] * (MAX_SLOTS - len(shown))
    verdict = verdict_markdown(result)
    if len(result.explanations) > MAX_SLOTS:
        verdict += f"\n\n{len(result.explanations) - MAX_SLOTS} more pictures are in the JSON report."
    probe = pipeline.patch_probe(result, MAX_SLOTS)
    if probe is not None:
        texts[probe.target] = gr.update(value=texts[probe.target]["value"] + "\n\n*Click a patch on the face pictures "
                                        "to compare every patch with it.*", visible=True)
    return [verdict, *images, *hidden, *plots, *hidden, *texts, *hidden, result.to_json(), probe]


def _probe_fn(card: Card, slot_index: int, picture: Pictures):
    """A click on a crop-sized picture redraws the patch-similarity grid for the clicked patch."""

    def probe_patch(probe: pipeline.PatchProbe | None, evt: gr.SelectData):
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

