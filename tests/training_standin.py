"""A small synthetic stand-in for ``training.data.build.build_dataset`` (engine tests only).

Reals are smooth random textures; fakes carry a brighter square patch whose location is the
ground-truth mask, so a tiny CNN can learn them in a few steps.
"""
from __future__ import annotations

import torch
from torch.utils.data import Dataset


class StandIn(Dataset):
    def __init__(self, size: int, n: int, seed: int, mean, std, reals_only: bool = False) -> None:
        self.size, self.n, self.seed, self.reals_only = size, n, seed, reals_only
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(self.seed * 10007 + i)
        s = self.size
        base = torch.rand(3, s // 4, s // 4, generator=g)
        img = torch.nn.functional.interpolate(base[None], size=(s, s), mode="bilinear", align_corners=False)[0]
        label = 0 if self.reals_only else i % 2
        mask = torch.zeros(1, s, s)
        if label:
            q = s // 4
            y, x = (int(v) for v in torch.randint(0, s - q, (2,), generator=g))
            mask[:, y:y + q, x:x + q] = 1.0
            img = img * (1 - mask) + (img * 0.3 + 0.7) * mask
        return {"image": (img - self.mean) / self.std, "label": torch.tensor(label), "kind": torch.tensor(label),
                "mask": mask, "regions": torch.zeros(10), "sentence": "a fake face" if label else "a real face",
                "video_id": f"v{label}-{i // 4}"}


def build_dataset(data_cfg: dict, detector_config, split: str, seed: int = 0) -> Dataset:
    n = int(data_cfg.get("n", 48))
    n = {"train": n, "val": n // 2, "all": n}[split]
    offset = {"train": 0, "val": 1000, "all": 2000}[split]
    reals_only = dict(data_cfg.get("kinds") or {}) == {"real": 1}
    return StandIn(detector_config.input_size, n, seed + offset, detector_config.mean, detector_config.std, reals_only)
