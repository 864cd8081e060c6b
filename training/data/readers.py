"""Data sets of existing real/fake images: a folder layout and DeepfakeBench's dataset JSON.

Both yield the same items as the synthetic set. Faces are found with the landmark cache and
aligned with the detector's crop policy; a file without a face falls back to a centred square
crop (counted in ``no_face_count``). Augmentation is applied to the ``train`` split only.
Fakes get kind ``fake_kind`` (default ``ae``, the generative "deepfake" anchor), the sentence
"The whole face is forged." and region label ``face``, unless a mask says nothing is known.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detectors.faces import load_image

from . import kinds
from .augment import AugmentConfig
from .items import crop_face, in_val_split, load_mask, make_item, warp_mask
from .landmark_cache import IMAGE_SUFFIXES, LandmarkCache
from .sentences import REAL_SENTENCE, WHOLE_FACE_SENTENCES, region_vector

FAKE_SENTENCE = WHOLE_FACE_SENTENCES[kinds.REGION]  # "The whole face is forged."


@dataclass(frozen=True)
class Record:
    path: Path
    label: int
    video_id: str
    mask: Path | None = None


class RecordDataset(torch.utils.data.Dataset):
    """Items from a list of :class:`Record` (what both readers produce)."""

    def __init__(self, records: list[Record], detector_config: Any, split: str, seed: int = 0,
                 augment: Any = None, fake_kind: str = "ae") -> None:
        if not records:
            raise ValueError("no images found for this data set and split")
        self.records = records
        self.config, self.policy = detector_config, detector_config.crop_policy
        self.split, self.seed, self.epoch = split, int(seed), 0
        self.aug = AugmentConfig.from_cfg(augment) if split == "train" else None
        self.fake_kind = kinds.KIND_CODES[fake_kind]
        self.landmarks = LandmarkCache().get_many([r.path for r in records], desc="face landmarks")
        self.no_face_count = sum(p is None for p in self.landmarks)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def video_ids(self) -> list[str]:
        return [r.video_id for r in self.records]

    @property
    def labels(self) -> list[int]:
        return [r.label for r in self.records]

    def __getitem__(self, index: int) -> dict[str, Any]:
        r = self.records[index]
        image = load_image(r.path)
        crop, _, matrix = crop_face(image, self.landmarks[index], self.policy)
        size = self.policy.size
        mask = np.zeros((size, size), np.float32)
        if r.mask is not None and r.mask.is_file():
            mask = warp_mask(load_mask(r.mask, image.shape[:2]), matrix, size)
        if r.label == 0:
            kind, regions, sentence = kinds.REAL, region_vector([]), REAL_SENTENCE
        else:
            kind, regions, sentence = self.fake_kind, region_vector(["face"]), FAKE_SENTENCE
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.aug is not None else None
        return make_item(crop, mask, r.label, kind, regions, r.video_id, self.config, rng=rng, aug=self.aug,
                         sentence=sentence)


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _find_mask(masks: Path, rel: Path) -> Path | None:
    for cand in [masks / rel] + [(masks / rel).with_suffix(s) for s in IMAGE_SUFFIXES]:
        if cand.is_file():
            return cand
    return None


def folder_records(root: str | Path, split: str = "all", val_fraction: float = 0.1) -> list[Record]:
    """``root/real/*``, ``root/fake/*`` (optionally one sub-folder per video) and optional
    ``root/masks/`` with the fakes' file names (``masks/x.png`` or ``masks/<video>/x.png``)."""
    root = Path(root)
    if not (root / "real").is_dir() and not (root / "fake").is_dir():
        raise FileNotFoundError(f"{root} needs real/ and/or fake/ sub-folders")
    out = []
    for label, name in ((0, "real"), (1, "fake")):
        base = root / name
        if not base.is_dir():
            continue
        for path in _images_under(base):
            rel = path.relative_to(base)
            video = rel.parts[0] if len(rel.parts) > 1 else path.stem
            if split != "all" and in_val_split(video, val_fraction) != (split == "val"):
                continue
            mask = _find_mask(root / "masks", rel) if label == 1 else None
            out.append(Record(path, label, video, mask))
    return out


def _label_of(name: str, label_map: dict[str, int] | None) -> int:
    if label_map and name in label_map:
        return 1 if int(label_map[name]) >= 1 else 0  # DeepfakeBench collapses labels >= 1 to fake
    return 0 if "real" in name.lower() else 1


def _videos(node: dict, compression: str) -> dict:
    """The ``{video: {label, frames}}`` level below a split, choosing ``compression`` if present."""
    if node and all(isinstance(v, dict) and "frames" in v for v in node.values()):
        return node
    if compression in node:
        return node[compression]
    return next(iter(node.values()), {}) if node else {}


def deepfakebench_records(json_file: str | Path, dataset: str | None = None, split: str = "test",
                          label_map: dict[str, int] | None = None, root: str | Path | None = None,
                          compression: str = "c23", frames_per_video: int = 0) -> list[Record]:
    """Frames listed in a DeepfakeBench dataset JSON
    ``{dataset: {label_name: {split: {[compression]: {video: {"label", "frames": [...]}}}}}}``.

    ``split``: train | val | test | all (``val`` falls back to ``test`` when the JSON has none).
    Relative frame paths resolve against ``root`` (default: the JSON's folder); masks are looked
    up by replacing ``frames`` with ``masks`` in the path. ``frames_per_video`` > 0 keeps that many
    evenly spaced frames. Video ids are ``<label_name>/<video>`` so that video-level AUC groups frames.
    """
    json_file = Path(json_file)
    data = json.loads(json_file.read_text())
    if dataset is None:
        if len(data) != 1:
            raise ValueError(f"{json_file} holds {sorted(data)}; say which with `dataset:`")
        dataset = next(iter(data))
    if dataset not in data:
        raise KeyError(f"{dataset!r} not in {json_file} (has {sorted(data)})")
    base = Path(root) if root is not None else json_file.parent
    out = []
    for label_name, by_split in data[dataset].items():
        if split == "all":
            splits = list(by_split)
        elif split == "val" and "val" not in by_split:
            splits = ["test"]
        else:
            splits = [split]
        for sp in splits:
            for video, entry in _videos(by_split.get(sp, {}), compression).items():
                frames = list(entry.get("frames", []))
                if frames_per_video and len(frames) > frames_per_video:
                    keep = np.linspace(0, len(frames) - 1, frames_per_video).round().astype(int)
                    frames = [frames[i] for i in keep]
                label = _label_of(entry.get("label", label_name), label_map)
                for frame in frames:
                    path = Path(frame) if Path(frame).is_absolute() else base / frame
                    mask = Path(str(path).replace("/frames/", "/masks/"))
                    out.append(Record(path, label, f"{label_name}/{video}", mask if mask != path else None))
    return out
