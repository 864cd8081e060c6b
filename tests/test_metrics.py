"""Metric functions against cases worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from training import metrics as M


def test_frame_auc_and_average_precision():
    scores, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    # fake/real pairs ranked correctly: (0.35>0.1), (0.8>0.1), (0.8>0.4); wrong: (0.35<0.4) -> 3/4
    assert M.auc(scores, labels) == pytest.approx(0.75)
    # ranked: 0.8 fake (P=1, R=.5), 0.4 real, 0.35 fake (P=2/3, R=1) -> AP = .5*1 + .5*2/3
    assert M.average_precision(scores, labels) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_video_auc_averages_frames_per_video():
    scores = [0.2, 0.4, 0.6, 0.5, 0.9, 0.1, 0.7]
    labels = [0, 0, 0, 1, 1, 1, 1]
    videos = ["a", "a", "b", "c", "c", "d", "d"]
    # video means: a .3 (real), b .6 (real), c .7 (fake), d .4 (fake); c beats a and b, d beats a only
    assert M.video_auc(scores, labels, videos) == pytest.approx(3 / 4)
    # frame level: 0.5 beats 2 reals, 0.9 beats 3, 0.1 none, 0.7 beats 3 -> 8/12
    assert M.auc(scores, labels) == pytest.approx(8 / 12)
    vs, vy = M.video_scores(scores, labels, videos)
    np.testing.assert_allclose(vs, [0.3, 0.6, 0.7, 0.4])
    np.testing.assert_array_equal(vy, [0, 0, 1, 1])


def test_eer_at_a_roc_point():
    # reals .1 .2 .3 .6, fakes .4 .5 .7 .9: at threshold .5 one real (.6) passes and one fake (.4) is missed
    scores = [0.1, 0.2, 0.3, 0.6, 0.4, 0.5, 0.7, 0.9]
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    eer, threshold = M.eer_point(scores, labels)
    assert eer == pytest.approx(0.25)
    assert threshold == pytest.approx(0.5)


def test_eer_interpolates_between_roc_points():
    # fakes .9 .8 .3, reals .5 .1: the miss rate stays 1/3 while the false-alarm rate jumps 0 -> 1/2,
    # so the two rates meet at 1/3 on that segment
    assert M.eer([0.9, 0.8, 0.3, 0.5, 0.1], [1, 1, 1, 0, 0]) == pytest.approx(1 / 3)


def test_eer_extremes():
    assert M.eer([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == pytest.approx(0.0)
    assert M.eer([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == pytest.approx(1.0)


def test_accuracy_at_threshold_and_one_class_cases():
    scores, labels = [0.1, 0.6, 0.4, 0.9], [0, 0, 1, 1]
    assert M.accuracy(scores, labels, 0.5) == pytest.approx(0.5)
    assert M.accuracy(scores, labels, 0.35) == pytest.approx(0.75)
    assert M.auc([0.2, 0.3], [1, 1]) is None
    assert M.eer([0.2, 0.3], [0, 0]) is None
    m = M.detection_metrics([0.2, 0.3], [1, 1])
    assert m["auc"] is None and m["n_fake"] == 2 and m["n_real"] == 0


def test_labels_above_one_count_as_fake():
    assert M.auc([0.1, 0.9, 0.8], [0, 2, 3]) == pytest.approx(1.0)


def test_calibrated_threshold_maximises_balanced_accuracy():
    # reals .1 .2 .3, fakes .25 .6 .7: cutting at .6 (J = 2/3 - 0) ties cutting at .25 (J = 1 - 1/3);
    # the lower false-alarm rate wins, and the threshold sits halfway to the next lower score (.3)
    scores = [0.1, 0.2, 0.3, 0.25, 0.6, 0.7]
    labels = [0, 0, 0, 1, 1, 1]
    t = M.calibrate_threshold(scores, labels)
    assert t == pytest.approx(0.45)
    assert M.balanced_accuracy(scores, labels, t) == pytest.approx((1 + 2 / 3) / 2)
    assert M.calibrate_threshold([0.1, 0.2], [0, 0]) is None


def test_metrics_are_json_safe():
    m = M.detection_metrics([0.1, 0.9, 0.4, 0.6], [0, 1, 0, 1], ["a", "b", "c", "d"])
    assert all(v is None or (isinstance(v, (int, float)) and math.isfinite(v)) for v in m.values())
    assert m["video_auc"] == pytest.approx(1.0) and m["n_videos"] == 4


def test_a_video_id_shared_by_a_real_and_a_fake_names_two_videos():
    # folder data sets name real/001.png and fake/001.png alike: still one real and one fake video
    scores, labels, videos = [0.2, 0.9, 0.4, 0.6], [0, 1, 0, 1], ["001", "001", "002", "002"]
    assert M.video_auc(scores, labels, videos) == pytest.approx(1.0)
    assert M.detection_metrics(scores, labels, videos)["n_videos"] == 4
