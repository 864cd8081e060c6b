"""The Markdown the cards and the lab show, read from the pipeline's results.

Kept out of :mod:`explain.summary`, which works on plain values, because these read
:class:`pipeline.DetectorResult` and the combined verdict: explain sits below the pipeline.
No Gradio here, so the words are testable without a UI.
"""
from __future__ import annotations

from collections.abc import Iterable

from explain.summary import accuracy_markdown, escape
from pipeline.results import DetectorResult
from pipeline.verdicts import combine
from training.lab import LabMap

VERDICT_WORDS = {"fake": "likely manipulated", "real": "likely real"}


def verdict_markdown(result: DetectorResult) -> str:
    """The card's head: verdict with probability and threshold, checkpoint, notes."""
    lines = []
    if result.status == "ok" and result.verdict is not None:
        v = result.verdict
        mark = "\u26a0\ufe0f" if v.is_fake else "\u2714\ufe0f"
        lines.append(f"### {mark} {v.summary().capitalize()}")
        lines.append(f"Probability of manipulation **{v.prob_fake:.3f}**, decision threshold **{v.threshold:.3f}**.")
        lines.append(f"Checkpoint: `{result.source}` \u00b7 {result.seconds:.2f} s")
        if v.n_faces > 1:
            lines.append(f"Face {v.face_index + 1} of {v.n_faces}.")
        lines.append(accuracy_markdown(result.to_json()["measured"]))
    elif result.status == "off":
        lines.append("### Not run")
        lines.append("Tick **Run** to include this detector.")
    elif result.status == "error":
        lines.append("### \u274c Failed on this face")
    else:
        lines.append("### Not available")
    if result.message:
        lines.append(f"> **Note:** {escape(result.message)}")
    return "\n\n".join(lines)


def combined_markdown(items: Iterable[DetectorResult | dict]) -> str:
    """The verdict across detectors and a table of each one's decision and weight (results or their JSON)."""
    items = [r.to_json() if isinstance(r, DetectorResult) else r for r in items if r]
    combined = combine(items)
    rows = ["| Detector | Verdict | P(manipulated) | Threshold | Weight |", "| --- | --- | --- | --- | --- |"]
    for r in items:
        if r.get("status") == "ok":
            skill = (r.get("measured") or {}).get("skill")
            weight = "\u2013 (not measured)" if skill is None else f"{skill:.2f}"
            rows.append(f"| {r['title']} | {VERDICT_WORDS[r['label']]} | {r['prob_fake']:.3f} | {r['threshold']:.3f} | "
                        f"{weight} |")
        else:
            word = {"off": "not run", "error": "failed"}.get(r.get("status"), "not available")
            rows.append(f"| {r['title']} | {word} | \u2013 | \u2013 | \u2013 |")
    note = ("Each detector compares its own probability with its own calibrated threshold. Its weight is how far "
            "its measured AUC is above guessing, averaged over the kinds of fake it was measured on (0 = guessing, "
            "1 = perfect); the card of each detector lists those figures.")
    return "\n\n".join([f"## Combined verdict: {combined.headline()}", combined.summary(), "\n".join(rows), note])


def lab_markdown(result: DetectorResult, maps: list[LabMap]) -> str:
    """The sentence beside a lab picture: verdict and how well each map found the forged region."""
    if not result.ok:
        return f"**{result.title}**\n\n" + verdict_markdown(result)
    lines = [f"**{result.title}**: {result.verdict.summary()}.\n"]
    if not result.verdict.is_fake:
        lines.append("It called the forgery real: it missed it. How its maps overlap the forged pixels anyway:\n")
    if not maps:
        lines.append("This detector gives no map to compare with the forged region.")
    for m in maps:
        auc, iou = m.scores.get("pixel_auc"), m.scores.get("iou")
        auc_text = f"{auc:.2f}" if auc is not None else "n/a"
        iou_text = f"{iou:.2f}" if iou is not None else "n/a"
        lines.append(f"- {m.title}: pixel AUC **{auc_text}** (0.5 = chance, 1 = perfect), best IoU **{iou_text}**")
    return "\n".join(lines)


#: The map every detector's verdict rests on: Grad-CAM of its own "fake" logit.
DECISION_MAP = "gradcam"


def decision_map(maps: list[LabMap]) -> LabMap | None:
    return next((m for m in maps if m.kind == DECISION_MAP), None)


def lab_table(rows: list[tuple[DetectorResult, list[LabMap]]]) -> str:
    """One line per detector: its verdict on the forgery and how well the map its verdict rests on
    (Grad-CAM toward "fake") finds the forged pixels; a detector that called the forgery real
    found nothing to locate, whatever its maps show."""
    out = ["| Detector | Verdict on the forgery | Its verdict's map (Grad-CAM): pixel AUC | best IoU |",
           "| --- | --- | --- | --- |"]
    for result, maps in rows:
        if not result.ok:
            continue
        verdict = result.verdict.summary()
        used = decision_map(maps)
        if not result.verdict.is_fake:
            out.append(f"| {result.title} | {verdict} | missed: called it real | \u2013 |")
        elif used is None:
            out.append(f"| {result.title} | {verdict} | no map | \u2013 |")
        else:
            auc, iou = used.scores.get("pixel_auc"), used.scores.get("iou")
            out.append(f"| {result.title} | {verdict} | {'n/a' if auc is None else f'{auc:.2f}'} | "
                       f"{'n/a' if iou is None else f'{iou:.2f}'} |")
    return "\n".join(out)
