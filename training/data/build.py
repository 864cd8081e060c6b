"""``build_dataset(data_cfg, detector_config, split, seed)``: the one entry point of the engine.

``data_cfg`` (a recipe's ``data:`` block) chooses one source:

- synthetic pool (default): ``pool`` (folder of real faces, default ``../shared/data/ffhq128-real``
  from the repo root), ``kinds`` (mix over real|sbi|donor|ae|region), ``cycle_kinds``,
  ``regions``, ``augment``, ``ae_weights``, ``limit``, ``val_fraction``, ``forgery_options``
  (per-kind generator options, e.g. ``{ae: {whole_frame_p: 0.5}}``), ``gan_pool`` (a folder of
  GAN-made faces the ``gan`` kind reads, e.g. ``../shared/data/gan-train``: training data only),
  ``paired`` (training batches hold each face beside one forgery of it);
- ``folder: DIR`` with ``real/``, ``fake/`` and optional ``masks/``;
- ``deepfakebench_json: FILE`` with ``dataset``, ``label_map``, optional ``root``,
  ``compression`` (c23), ``frames_per_video``.

Items: ``image`` (3, S, S) float32 normalised, ``label`` long, ``kind`` long, ``mask``
(1, S, S) float32, ``regions`` float32 (len(SENTENCE_REGIONS)), ``sentence`` str, ``video_id`` str.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_POOL = "../shared/data/ffhq128-real"


def _path(p: str | Path) -> Path:
    p = Path(p).expanduser()
    return p if p.is_absolute() else (ROOT / p)


def build_dataset(data_cfg: dict | None, detector_config: Any, split: str, seed: int = 0) -> torch.utils.data.Dataset:
    """Build the data set a recipe asks for (see the module docstring for ``data_cfg`` keys)."""
    cfg = dict(data_cfg or {})
    if split not in ("train", "val", "all", "test"):
        raise ValueError(f"split must be train, val or all, not {split!r}")
    val_fraction = float(cfg.get("val_fraction", 0.1))
    if cfg.get("folder"):
        from .readers import RecordDataset, folder_records

        records = folder_records(_path(cfg["folder"]), "all" if split == "test" else split, val_fraction)
        return RecordDataset(records, detector_config, split, seed, cfg.get("augment"), cfg.get("fake_kind", "ae"))
    if cfg.get("deepfakebench_json"):
        from .readers import RecordDataset, deepfakebench_records

        records = deepfakebench_records(_path(cfg["deepfakebench_json"]), cfg.get("dataset"), split,
                                        cfg.get("label_map"), cfg.get("root") and _path(cfg["root"]),
                                        cfg.get("compression", "c23"), int(cfg.get("frames_per_video", 0)))
        return RecordDataset(records, detector_config, split, seed, cfg.get("augment"), cfg.get("fake_kind", "ae"))
    from .synthetic import SyntheticForgeries

    ae = cfg.get("ae_weights")
    return SyntheticForgeries(
        _path(cfg.get("pool", DEFAULT_POOL)), detector_config, "all" if split == "test" else split, seed,
        kinds_mix=cfg.get("kinds"), cycle_kinds=bool(cfg.get("cycle_kinds", False)), regions=cfg.get("regions"),
        augment=cfg.get("augment"), ae_weights=str(_path(ae)) if ae else None, limit=cfg.get("limit"),
        val_fraction=val_fraction, forgery_options=cfg.get("forgery_options"),
        gan_pool=_path(cfg["gan_pool"]) if cfg.get("gan_pool") else None, paired=bool(cfg.get("paired", False)))
