"""The field's detection metrics (DeepfakeBench conventions, scikit-learn); localization metrics
are in :mod:`training.localization`.

Scores are ``prob_fake`` (higher = more fake), labels 0 real / 1 fake (anything >= 1 is fake).
Metrics that need both classes return ``None`` when one is missing, so results stay JSON.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve


def _arrays(scores: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = (np.asarray(labels).reshape(-1) >= 1).astype(np.int64)
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores for {y.size} labels")
    return s, y


def _both_classes(y: np.ndarray) -> bool:
    return bool(y.size) and 0 < y.sum() < y.size


def auc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """Area under the ROC curve (frame level)."""
    s, y = _arrays(scores, labels)
    return float(roc_auc_score(y, s)) if _both_classes(y) else None


def average_precision(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    s, y = _arrays(scores, labels)
    return float(average_precision_score(y, s)) if _both_classes(y) else None


def eer(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """Equal error rate: on the ROC curve, where the miss rate (1 - TPR) meets the false alarm
    rate (FPR). Between two ROC points the crossing is interpolated linearly, so a perfect
    detector has EER 0 and a chance one 0.5."""
    point = eer_point(scores, labels)
    return None if point is None else point[0]


def eer_point(scores: Sequence[float], labels: Sequence[int]) -> tuple[float, float] | None:
    """``(eer, threshold)``: the equal error rate and a score threshold that attains it."""
    s, y = _arrays(scores, labels)
    if not _both_classes(y):
        return None
    fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    fnr = 1.0 - tpr
    diff = fnr - fpr  # starts at 1 (threshold inf: everything real), ends at -1
    i = int(np.argmax(diff <= 0))  # first point where the miss rate no longer exceeds false alarms
    if diff[i] == 0 or i == 0:
        value, threshold = fpr[i], thresholds[i]
    else:
        # the two rates cross between points i-1 and i: interpolate linearly
        t = diff[i - 1] / (diff[i - 1] - diff[i])
        value = fpr[i - 1] + t * (fpr[i] - fpr[i - 1])
        threshold = thresholds[i]
    return float(value), float(min(threshold, 1.0))


def accuracy(scores: Sequence[float], labels: Sequence[int], threshold: float = 0.5) -> float | None:
    """Share of correct decisions with ``fake = score >= threshold``."""
    s, y = _arrays(scores, labels)
    if not y.size:
        return None
    return float(((s >= threshold).astype(np.int64) == y).mean())


def balanced_accuracy(scores: Sequence[float], labels: Sequence[int], threshold: float = 0.5) -> float | None:
    s, y = _arrays(scores, labels)
    if not _both_classes(y):
        return None
    pred = s >= threshold
    return float((pred[y == 1].mean() + (~pred[y == 0]).mean()) / 2)


def video_scores(scores: Sequence[float], labels: Sequence[int], video_ids: Sequence[str]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """One score per video (the mean of its frames' scores) and its label.

    A video is a (label, video id) pair: a real and a fake that share an id (``real/001.png``
    and ``fake/001.png`` in a folder data set) are two videos, never one mixed video.
    """
    s, y = _arrays(scores, labels)
    if len(video_ids) != s.size:
        raise ValueError(f"{len(video_ids)} video ids for {s.size} scores")
    groups: dict[tuple[int, str], list[int]] = defaultdict(list)
    for i, vid in enumerate(video_ids):
        groups[(int(y[i]), str(vid))].append(i)
    keys = sorted(groups)
    vs = np.array([s[groups[k]].mean() for k in keys])
    vy = np.array([k[0] for k in keys], dtype=np.int64)
    return vs, vy


def video_auc(scores: Sequence[float], labels: Sequence[int], video_ids: Sequence[str]) -> float | None:
    """ROC AUC over videos, each scored by the mean probability of its frames."""
    vs, vy = video_scores(scores, labels, video_ids)
    return auc(vs, vy)


def calibrate_threshold(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """The decision threshold that maximises balanced accuracy (Youden's J = TPR - FPR).

    Balanced accuracy, not plain accuracy, so that a validation split with more fakes than
    reals (or the reverse) does not pull the threshold toward the larger class. Among equally
    good ROC points the one with the lower FPR wins; the threshold is placed halfway between
    the chosen score and the next lower one, so that small score noise does not flip it.
    """
    s, y = _arrays(scores, labels)
    if not _both_classes(y):
        return None
    fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    j = tpr - fpr
    i = int(np.argmax(j >= j.max() - 1e-12))  # the first (lowest FPR) of the maxima, float ties included
    t = float(thresholds[i])
    if not math.isfinite(t):
        return 1.0
    lower = s[s < t]
    return float((t + lower.max()) / 2) if lower.size else t


def detection_metrics(scores: Sequence[float], labels: Sequence[int], video_ids: Sequence[str] | None = None,
                      threshold: float = 0.5) -> dict[str, Any]:
    """Frame AUC, video AUC, EER, AP, ACC (at ``threshold``) and class counts, as JSON-ready values."""
    s, y = _arrays(scores, labels)
    return {
        "auc": auc(s, y),
        "video_auc": video_auc(s, y, video_ids) if video_ids is not None else auc(s, y),
        "eer": eer(s, y),
        "ap": average_precision(s, y),
        "acc": accuracy(s, y, threshold),
        "balanced_acc": balanced_accuracy(s, y, threshold),
        "threshold": float(threshold),
        "n_real": int((y == 0).sum()),
        "n_fake": int((y == 1).sum()),
        "n_videos": len(set(zip(y.tolist(), map(str, video_ids)))) if video_ids is not None else int(s.size),
    }
