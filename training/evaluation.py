"""Evaluate a detector on a data set: detection metrics, ROC curve, threshold calibration, and
how well each explanation map locates the forged pixels.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detectors.file_format import CONFIG_FILE

from . import localization as L
from . import metrics as M
from .engine import predict_dataset

#: The rule :func:`training.metrics.calibrate_threshold` implements, for logs and model cards.
CALIBRATION_RULE = "maximum balanced accuracy (Youden's J) on the calibration split"


def score(detector, dataset, batch_size: int = 32, num_workers: int = 0, progress: bool = False) -> dict[str, Any]:
    """Scores plus detection metrics at the detector's stored threshold."""
    result = predict_dataset(detector, dataset, batch_size, num_workers=num_workers, progress=progress)
    result["metrics"] = M.detection_metrics(result["scores"], result["labels"], result["video_ids"],
                                            threshold=float(detector.config.threshold))
    return result


def metrics_by_kind(result: dict[str, Any], threshold: float) -> dict[str, dict[str, Any]]:
    """Per forgery kind: AUC of that kind's fakes against all reals (when kinds are known)."""
    from .data.kinds import KIND_NAMES

    kinds, labels, scores = result["kinds"], result["labels"], result["scores"]
    reals = labels == 0
    out = {}
    for code in sorted(set(kinds[labels == 1].tolist())):
        if code < 0:
            continue
        sel = reals | ((labels == 1) & (kinds == code))
        out[KIND_NAMES.get(int(code), str(code))] = {
            "auc": M.auc(scores[sel], labels[sel]), "n": int(((labels == 1) & (kinds == code)).sum()),
            "recall": M.accuracy(scores[(labels == 1) & (kinds == code)],
                                 labels[(labels == 1) & (kinds == code)], threshold)}
    return out


def draws_summary(detector, build, first: dict[str, Any], seeds: list[int], batch_size: int = 32,
                  num_workers: int = 0, progress: bool = False) -> dict[str, Any]:
    """AUC over several forgery draws of the same faces: ``first`` is the scored result of the first
    seed, ``build(seed)`` makes the dataset of each further one. One draw of a small validation split
    moves by several points between seeds, so candidates are compared on the mean."""
    results = [first] + [predict_dataset(detector, build(s), batch_size, num_workers=num_workers, progress=progress)
                         for s in seeds[1:]]
    aucs = [M.auc(r["scores"], r["labels"]) for r in results]
    kinds = [metrics_by_kind(r, float(detector.config.threshold)) for r in results]
    by_kind = {k: float(np.mean([d[k]["auc"] for d in kinds if k in d])) for k in kinds[0]}
    caught = {k: float(np.mean([d[k]["recall"] for d in kinds if k in d])) for k in kinds[0]}
    return {"seeds": list(seeds), "auc": aucs, "mean": float(np.mean(aucs)), "std": float(np.std(aucs)),
            "min": float(np.min(aucs)), "max": float(np.max(aucs)), "by_kind_mean": by_kind,
            "by_kind_recall_mean": caught}


def plot_roc(scores: np.ndarray, labels: np.ndarray, path: Path, title: str, threshold: float | None = None) -> Path | None:
    """ROC curve PNG with the AUC and the operating point at ``threshold``."""
    import matplotlib
    from sklearn.metrics import roc_curve

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = (np.asarray(labels) >= 1).astype(int)
    if not (0 < y.sum() < y.size):
        return None
    fpr, tpr, _ = roc_curve(y, scores)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(fpr, tpr, color="#1f5fa8", lw=2, label=f"AUC {M.auc(scores, y):.3f}")
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="chance")
    if threshold is not None:
        pred = np.asarray(scores) >= threshold
        ax.scatter([pred[y == 0].mean()], [pred[y == 1].mean()], color="#e8a33d", zorder=3,
                   label=f"threshold {threshold:.3f}")
    ax.set_xlabel("false positive rate (reals called fake)")
    ax.set_ylabel("true positive rate (fakes caught)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_threshold(folder: Path, threshold: float, info: dict[str, Any]) -> Path:
    """Store a calibrated threshold (and how it was chosen) in a checkpoint's ``config.json``."""
    path = Path(folder) / CONFIG_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    data["threshold"] = float(threshold)
    extra = dict(data.get("extra") or {})
    extra["calibration"] = {"rule": CALIBRATION_RULE, **info}
    data["extra"] = extra
    path.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    return path


def measured_record(metrics: dict[str, Any], scores: np.ndarray, labels: np.ndarray, threshold: float,
                    label: str, command: str, data: str, by_kind: bool = True) -> dict[str, Any]:
    """What a checkpoint's card and the app say about how well it detects, by kind of fake.

    Per kind: its AUC against all reals and the share of its fakes caught at the stored
    threshold (means over draws when several were scored); ``real_called_real``: the share of
    real faces the detector calls real at that threshold. With ``by_kind=False`` (a ``real/`` +
    ``fake/`` folder, whose fakes are of one kind) the set is one kind, named by ``label``.
    """
    from .data.kinds import KIND_LABELS

    draws = metrics.get("draws")
    kinds: dict[str, dict[str, Any]] = {}
    if by_kind and metrics.get("by_kind"):
        auc_of = draws["by_kind_mean"] if draws else {k: v["auc"] for k, v in metrics["by_kind"].items()}
        caught_of = draws["by_kind_recall_mean"] if draws else {k: v["recall"] for k, v in metrics["by_kind"].items()}
        for kind in metrics["by_kind"]:
            kinds[kind] = {"label": KIND_LABELS.get(kind, kind), "auc": _round(auc_of.get(kind)),
                           "caught": _round(caught_of.get(kind))}
    else:
        kinds["all"] = {"label": label, "auc": _round(metrics["auc"]),
                        "caught": _round(M.accuracy(scores[labels == 1], labels[labels == 1], threshold))}
    return {"label": label, "data": data, "split": metrics.get("split"),
            "n_real": int(metrics["n_real"]), "n_fake": int(metrics["n_fake"]),
            "auc": _round(draws["mean"] if draws else metrics["auc"]),
            "auc_sd": _round(draws["std"]) if draws else None, "draws": len(draws["auc"]) if draws else 1,
            "real_called_real": _round(M.accuracy(scores[labels == 0], labels[labels == 0], threshold)),
            "threshold": _round(threshold), "kinds": kinds, "command": command}


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def write_measured(folder: Path, name: str, record: dict[str, Any]) -> Path:
    """Store one measured set (see :func:`measured_record`) under ``extra.measured.<name>``."""
    path = Path(folder) / CONFIG_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    extra = dict(data.get("extra") or {})
    measured = dict(extra.get("measured") or {})
    measured[name] = record
    extra["measured"] = measured
    data["extra"] = extra
    path.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    return path


# ---- localization ------------------------------------------------------------------------------

def _crop_of(image: torch.Tensor, config) -> np.ndarray:
    mean = torch.tensor(config.mean).view(3, 1, 1)
    std = torch.tensor(config.std).view(3, 1, 1)
    rgb = (image.float().cpu() * std + mean).clamp(0, 1)
    return (rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _aligned(crop: np.ndarray, config):
    """The crop as an :class:`AlignedFace` (identity matrix; landmarks found on the crop itself)."""
    from detectors.faces import AlignedFace, detect_faces
    from detectors.faces.errors import NoFaceFound

    try:
        landmarks = detect_faces(crop)[0].landmarks.astype(np.float32)
    except NoFaceFound:
        landmarks = None
    matrix = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    policy = config.crop_policy
    return AlignedFace(crop, matrix, landmarks if landmarks is not None else np.zeros((478, 2), np.float32), policy), \
        landmarks is not None


def localization(detector, dataset, max_items: int = 64, progress: bool = False,
                 candidates: np.ndarray | None = None) -> dict[str, Any]:
    """Pixel AUC and best-threshold IoU (:mod:`training.localization`'s convention) of each
    explanation map with a heatmap, on forged items with a forged pixel (the first ``max_items``
    of them, in dataset order).

    Maps and masks are both in crop coordinates (the item's image is the crop). ``candidates``
    (a boolean array over the data set, e.g. ``predict_dataset``'s ``has_mask``) limits the scan.
    """
    from explain.evidence import as_heatmap_at, explain

    picked = []
    indices = np.flatnonzero(candidates) if candidates is not None else range(len(dataset))
    for i in indices:
        i = int(i)
        item = dataset[i]
        mask = item.get("mask")
        if int(item["label"]) == 1 and mask is not None and float(mask.max()) >= L.FORGED_AT:
            picked.append(item)
            if len(picked) >= max_items:
                break
    if not picked:
        return {}
    maps: dict[str, list[np.ndarray]] = {}
    masks: dict[str, list[np.ndarray]] = {}
    titles: dict[str, str] = {}
    no_landmarks = 0
    iterator = picked
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(picked, desc="localization", unit="face", mininterval=1.0)
    for item in iterator:
        crop = _crop_of(item["image"], detector.config)
        aligned, found = _aligned(crop, detector.config)
        no_landmarks += not found
        gt = item["mask"].float().squeeze(0).numpy()
        _, explanations = explain(detector, aligned)
        for e in explanations:
            heat = as_heatmap_at(e, gt.shape)
            if heat is None:
                continue
            maps.setdefault(e.kind, []).append(heat)
            masks.setdefault(e.kind, []).append(gt)
            titles[e.kind] = e.title
    out: dict[str, Any] = {"n_items": len(picked), "no_landmarks": no_landmarks, "maps": {}}
    for kind in maps:
        iou, t = L.best_iou(maps[kind], masks[kind])
        out["maps"][kind] = {"title": titles[kind], "pixel_auc": L.pixel_auc(maps[kind], masks[kind]),
                             "iou": iou, "iou_threshold": t, "n": len(maps[kind])}
    return out
