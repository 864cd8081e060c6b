"""Optimizers and learning-rate schedules named by a recipe's ``train`` section."""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn


def param_groups(items: Iterable[Any], lr: float) -> list[dict[str, Any]]:
    """Parameters or param-group dicts (``{"params": [...], "lr": x}`` or ``"lr_scale": s``) -> groups.

    A method's ``trainable_parameters`` may yield plain parameters (one group at the recipe's
    lr) or dicts (e.g. VLFFD: backbone at 1e-5, heads at 1e-4).
    """
    plain: list[nn.Parameter] = []
    groups: list[dict[str, Any]] = []
    seen: set[int] = set()
    for item in items:
        if isinstance(item, dict):
            group = dict(item)
            group["params"] = [p for p in group["params"] if id(p) not in seen]
            seen.update(id(p) for p in group["params"])
            scale = group.pop("lr_scale", None)
            if "lr" not in group:
                group["lr"] = lr * (scale if scale is not None else 1.0)
            groups.append(group)
        elif id(item) not in seen:
            seen.add(id(item))
            plain.append(item)
    if plain:
        groups.insert(0, {"params": plain, "lr": lr})
    return [g for g in groups if g["params"]]


def build_optimizer(groups: list[dict[str, Any]], settings: dict[str, Any]) -> torch.optim.Optimizer:
    name = str(settings["optimizer"]).lower()
    lr, wd = float(settings["lr"]), float(settings["weight_decay"])
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=tuple(settings["betas"]), weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(settings["betas"]), weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=float(settings["momentum"]), weight_decay=wd,
                               nesterov=bool(settings["nesterov"]))
    raise ValueError(f"unknown optimizer {name!r} (adam, adamw, sgd)")


def lr_factor(step: int, settings: dict[str, Any], total_steps: int) -> float:
    """Multiplier of the base lr after ``step`` optimizer steps: linear warm-up, then the schedule."""
    warmup = int(settings["warmup_steps"])
    if warmup and step < warmup:
        return (step + 1) / warmup
    name = str(settings["scheduler"]).lower()
    if name in ("none", "constant", ""):
        return 1.0
    if name == "cosine":
        span = max(1, total_steps - warmup)
        progress = min(1.0, (step - warmup) / span)
        floor = float(settings["min_lr_ratio"])
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if name == "step":
        return float(settings["gamma"]) ** ((step - warmup) // max(1, int(settings["step_size"])))
    raise ValueError(f"unknown scheduler {name!r} (none, cosine, step)")


def build_scheduler(optimizer: torch.optim.Optimizer, settings: dict[str, Any], total_steps: int):
    """A ``LambdaLR``; its state is just the step count, restored by ``last_epoch`` on resume."""
    lr_factor(0, settings, total_steps)  # validate the name early
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, settings, total_steps))
