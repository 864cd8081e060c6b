"""Data sets and loaders for the engine: deterministic per-epoch order, seeded workers."""
from __future__ import annotations

import importlib
import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def dataset_builder(data_cfg: dict[str, Any]) -> Callable[..., Dataset]:
    """``data.builder: module:function`` if given, else ``training.data.build.build_dataset``."""
    spec = data_cfg.get("builder")
    if spec:
        module, _, attr = str(spec).partition(":")
        return getattr(importlib.import_module(module), attr or "build_dataset")
    try:
        from training.data.build import build_dataset
    except ModuleNotFoundError as exc:  # the forgery engine ships it
        raise RuntimeError("training.data.build is not available; give data.builder: module:function") from exc
    return build_dataset


def build_dataset(data_cfg: dict[str, Any], detector_config, split: str, seed: int = 0) -> Dataset:
    cfg = {k: v for k, v in data_cfg.items() if k != "builder"}
    return dataset_builder(data_cfg)(cfg, detector_config, split, seed=seed)


class EpochSampler(Sampler[int]):
    """A permutation that depends only on ``(seed, epoch)``, so a resumed run sees the same order."""

    def __init__(self, n: int, seed: int, shuffle: bool = True) -> None:
        self.n, self.seed, self.shuffle, self.epoch = n, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n))
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class WorkerSeeder:
    """``worker_init_fn`` seeding each worker's generators from (seed, epoch, worker id)."""

    def __init__(self, seed: int) -> None:
        self.seed, self.epoch = seed, 0

    def __call__(self, worker_id: int) -> None:
        s = (self.seed * 1_000_003 + self.epoch * 1009 + worker_id) % (2**31)
        random.seed(s)
        np.random.seed(s)
        torch.manual_seed(s)


def make_loader(dataset: Dataset, batch_size: int, seed: int, shuffle: bool, num_workers: int,
                drop_last: bool, pin_memory: bool = False) -> tuple[DataLoader, EpochSampler, WorkerSeeder, torch.Generator]:
    """A loader whose order and worker seeds never draw from the global torch generator.

    Its own ``generator`` supplies the workers' base seed; the engine reseeds it per epoch,
    so that creating an iterator (which draws one number) leaves the training RNG untouched.
    """
    sampler = EpochSampler(len(dataset), seed, shuffle)
    seeder = WorkerSeeder(seed)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                        drop_last=drop_last and len(dataset) >= batch_size, worker_init_fn=seeder,
                        generator=generator, pin_memory=pin_memory,
                        persistent_workers=False)
    return loader, sampler, seeder, generator
