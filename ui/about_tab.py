"""The About tab: the detectors in this build, how well each detects, what happens to a visitor's photos."""
from __future__ import annotations

import gradio as gr

import pipeline
from detectors.measured import measured_of
from explain import summary


def build_about_tab(analyzer: pipeline.Analyzer, upload_grace: float, delete_cache: tuple[int, int]) -> None:
    with gr.Tab("About", id="about"):
        gr.Markdown(about_markdown(analyzer, upload_grace, delete_cache), elem_id="about-text")


def about_markdown(analyzer: pipeline.Analyzer, upload_grace: float, delete_cache: tuple[int, int]) -> str:
    """What the About tab says: the detectors loaded, how well each detects, what happens to photos."""
    lines = ["### Detectors in this build", "| Detector | Paper | Checkpoint |", "| --- | --- | --- |"]
    measured = []
    for slot in analyzer.slots:
        loaded = analyzer.loaded(slot.family)
        where = f"`{loaded.source}`" if loaded.model is not None else f"missing: {loaded.message}"
        lines.append(f"| {loaded.title} | {loaded.paper} | {where} |")
        if loaded.model is not None:
            measured.append((loaded.title, pipeline.measured_json(measured_of(loaded.model.config))))
    lines += ["", "### How well each checkpoint detects, by kind of fake",
              "Measured AUC (0.5 = guessing, 1 = perfect, below 0.5 = worse than guessing) on faces none of them was "
              "trained on, from each checkpoint's recorded evaluation. Kinds not listed (diffusion-generated faces, "
              "real face swaps, attribute edits) were not measured: expect less. The StyleGAN2 faces come from the "
              "generator whose faces are in the training mix; a generator left out of training is ranked close to "
              "guessing.", "",
              summary.accuracy_table(measured)]
    lines += [
        "", "### Your photos",
        f"Uploads are deleted {upload_grace:g} s after the request that used them; pictures made for you are "
        f"removed from the server's cache within {every_age_text(delete_cache)}. "
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


def every_age_text(sweep: tuple[int, int]) -> str:
    """How long Gradio keeps a cached file at most, in words ("10\u201312 minutes")."""
    every, age = sweep
    return f"{age // 60}\u2013{(every + age) // 60} minutes" if age >= 60 else f"{age}\u2013{every + age} seconds"
