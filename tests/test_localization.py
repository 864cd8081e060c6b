"""The one localization convention (training.localization), on masks small enough to work out by hand."""
from __future__ import annotations

import numpy as np
import pytest

from training import localization as L
from training.lab import score_map


def test_pixel_auc_counts_pairs_and_ties_half():
    heat = np.array([[0.9, 0.4], [0.6, 0.1]])
    mask = np.array([[1.0, 1.0], [0.0, 0.0]])
    # forged .9 and .4 against untouched .6 and .1: .9 beats both, .4 beats .1 only -> 3 of 4 pairs
    assert L.pixel_auc([heat], [mask]) == pytest.approx(0.75)
    # every pair tied -> each counts half
    assert L.pixel_auc([np.full((2, 2), 0.3)], [mask]) == pytest.approx(0.5)
    # forged .5 ties untouched .5 (half), beats .2 (one); forged .7 beats both (two) -> 3.5 of 4
    assert L.pixel_auc([np.array([[0.5, 0.7], [0.5, 0.2]])], [mask]) == pytest.approx(0.875)


def test_best_iou_tries_every_cut_of_the_map():
    heat = np.array([[0.9, 0.4], [0.6, 0.1]])
    mask = np.array([[1.0, 1.0], [0.0, 0.0]])
    # t=.9 marks {.9}: 1/(2+1-1) = 1/2; t=.6 marks {.9,.6}: 1/3; t=.4 marks three: 2/(2+3-2) = 2/3; t=.1: 2/4
    iou, t = L.best_iou([heat], [mask])
    assert iou == pytest.approx(2 / 3) and t == pytest.approx(0.4)
    # a flat map can only mark everything: IoU = the forged share, 2/4
    assert L.best_iou([np.full((2, 2), 0.3)], [mask]) == (pytest.approx(0.5), pytest.approx(0.3))


def test_a_mask_pixel_at_one_half_is_forged():
    heat = np.array([[1.0, 0.0]])
    mask = np.array([[0.5, 0.49]])  # with "> 0.5" nothing would be forged and both scores would be None
    assert L.pixel_auc([heat], [mask]) == pytest.approx(1.0)
    assert L.best_iou([heat], [mask]) == (pytest.approx(1.0), pytest.approx(1.0))
    assert L.forged(mask).tolist() == [[True, False]]


def test_a_set_is_scored_pooled_with_one_threshold():
    # each picture alone is separated perfectly; pooled, forged .5 (picture B) sits below untouched .6 (A)
    maps = [np.array([[0.8, 0.6]]), np.array([[0.5, 0.1]])]
    masks = [np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]])]
    assert [L.pixel_auc([m], [k]) for m, k in zip(maps, masks)] == [1.0, 1.0]
    # pooled pairs: .8>.6, .8>.1, .5<.6, .5>.1 -> 3/4
    assert L.pixel_auc(maps, masks) == pytest.approx(0.75)
    # cuts: .8 -> 1/2; .6 -> 1/3; .5 -> 2/(2+3-2) = 2/3; .1 -> 2/4
    iou, t = L.best_iou(maps, masks)
    assert iou == pytest.approx(2 / 3) and t == pytest.approx(0.5)


def test_nothing_to_find_or_nothing_untouched():
    heat = np.array([[0.2, 0.7]])
    assert L.pixel_auc([heat], [np.zeros((1, 2))]) is None
    assert L.best_iou([heat], [np.zeros((1, 2))]) == (None, None)
    assert L.pixel_auc([heat], [np.ones((1, 2))]) is None
    assert L.best_iou([heat], [np.ones((1, 2))]) == (pytest.approx(1.0), pytest.approx(0.2))
    with pytest.raises(ValueError, match="differ in size"):
        L.pixel_auc([np.zeros((2, 2))], [np.zeros((3, 3))])
    with pytest.raises(ValueError, match="2 maps for 1 masks"):
        L.best_iou([heat, heat], [heat])


def test_the_lab_scores_one_picture_by_the_same_convention():
    heat = np.array([[0.9, 0.4], [0.6, 0.1]], np.float32)
    mask = np.array([[1.0, 1.0], [0.0, 0.0]], np.float32)
    assert score_map(heat, mask) == {"pixel_auc": pytest.approx(0.75), "iou": pytest.approx(2 / 3),
                                     "iou_threshold": pytest.approx(0.4), "forged_share": pytest.approx(0.5)}
