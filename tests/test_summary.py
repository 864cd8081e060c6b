"""Words the cards show: escaped captions, measured accuracy, the lab's verdict-map column, zoom.

``explain.summary`` works on plain values; the words that read a pipeline result are ``ui.texts``.
"""
from __future__ import annotations

import numpy as np
import pytest

from detectors.verdict import Verdict
from explain import summary
from explain.base import Explanation
from pipeline import DetectorResult
from training.lab import LabMap
from ui import texts


def _result(prob: float, threshold: float = 0.5) -> DetectorResult:
    crop = np.zeros((64, 64, 3), np.uint8)
    return DetectorResult("tiny", "tiny_test", "Tiny", "", "ok", verdict=Verdict("tiny_test", prob, threshold, "random",
                                                                                  crop))


def _map(kind: str, auc: float) -> LabMap:
    return LabMap("Tiny", kind.title(), np.zeros((8, 8), np.float32), {"pixel_auc": auc, "iou": 0.5}, kind)


def test_a_caption_token_survives_markdown():
    e = Explanation("antifake_prompt_answer", "Answer", np.zeros((4, 4, 3), np.uint8),
                    'Asked "Is this photo real [*]?" it answers *no* with p_yes 0.2 <b>')
    text = summary.explanation_markdown(e)
    assert r"real \[\*\]?" in text and r"\*no\*" in text and r"\<b\>" in text


def test_the_lab_column_scores_the_verdicts_own_map_and_only_when_it_found_the_forgery():
    maps = [_map("lav_location", 0.95), _map("gradcam", 0.61)]
    caught = texts.lab_table([(_result(0.9), maps)]).splitlines()[-1]
    assert "| 0.61 |" in caught and "0.95" not in caught  # not the best map: the one the verdict rests on
    missed = texts.lab_table([(_result(0.1), maps)]).splitlines()[-1]
    assert "missed: called it real" in missed and "0.95" not in missed and "0.61" not in missed


def test_zoom_box_frames_a_small_forgery_and_keeps_the_whole_crop_when_nothing_is_forged():
    truth = np.zeros((256, 256), np.float32)
    truth[120:140, 110:150] = 1.0  # a nose-sized region
    y0, y1, x0, x1 = summary.zoom_box(truth)
    assert y1 - y0 == x1 - x0 and (y1 - y0) < 128  # zoomed at least 2x
    assert y0 <= 120 and y1 >= 140 and x0 <= 110 and x1 >= 150  # the forgery is inside
    assert summary.zoom_box(np.zeros((64, 64))) == (0, 64, 0, 64)
    edge = np.zeros((100, 100), np.float32)
    edge[0:10, 90:100] = 1.0
    y0, y1, x0, x1 = summary.zoom_box(edge)
    assert 0 <= y0 and y1 <= 100 and 0 <= x0 and x1 <= 100


def test_accuracy_markdown_flags_worse_than_guessing_and_says_when_nothing_was_measured():
    measured = {"sentence": "It catches a (0.99); is worse than guessing on b (0.40) (AUC: ...).",
                "real_called_real": 0.8, "skill": 0.5,
                "kinds": [{"name": "b", "auc": 0.40, "caught": 0.3}, {"name": "a", "auc": 0.99, "caught": 0.97}]}
    text = summary.accuracy_markdown(measured)
    rows = [line for line in text.splitlines() if line.startswith("| ") and "AUC" not in line and "---" not in line]
    assert rows[0].startswith("| a | 0.99") and "\u26a0" in rows[1] and "Real faces called real: 80%" in text
    assert "no measured figures" in summary.accuracy_markdown(None)


@pytest.mark.parametrize("done, expected", [(0, None), (1, "1 of 2 done"), (2, "All 2 detectors are done")])
def test_the_status_line_ends_when_the_last_card_is_in(done, expected):
    pytest.importorskip("gradio")
    from pipeline import PreparedImage
    from ui.analyze_tab import progress

    prep = PreparedImage(np.zeros((8, 8, 3), np.uint8), [object()])
    items = [_result(0.9).to_json()] * done + [None] * (2 - done)
    combined, status = progress(prep, 1, *items)
    if expected is None:
        assert combined == ""
    else:
        assert expected in status and "Combined verdict" in combined


def test_face_box_grows_the_face_and_stays_inside_the_photo():
    assert summary.face_box((100, 100, 200, 220), (480, 640)) == (58, 262, 65, 235)
    assert summary.face_box((0, 0, 50, 50), (60, 60)) == (0, 60, 0, 60)
