"""Resumable training state without pickle: tensors in safetensors, everything else in JSON.

``torch.save`` of an optimizer state_dict is a pickle; here the state_dict is flattened into
named tensors (``optimizer.state.<param>.<key>``) plus a JSON description of the rest
(param groups, non-tensor entries), and the random generators of Python, NumPy and torch are
stored the same way.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

STATE_DIR = "training_state"
TENSORS_FILE = "state.safetensors"
JSON_FILE = "state.json"


# ---- optimizer --------------------------------------------------------------------------------

def flatten_optimizer(state_dict: dict[str, Any], prefix: str = "optimizer") -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer ``state_dict`` into named tensors and a JSON-ready remainder."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in state_dict["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.state.{pid}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    groups = []
    for group in state_dict["param_groups"]:
        tuples = sorted(k for k, v in group.items() if isinstance(v, tuple))
        groups.append({"group": {k: list(v) if isinstance(v, tuple) else v for k, v in group.items()},
                       "tuples": tuples})
    meta = {"state_keys": {str(pid): sorted(e) for pid, e in state_dict["state"].items()},
            "scalars": scalars, "param_groups": groups}
    return tensors, meta


def unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict, prefix: str = "optimizer") -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer`."""
    state: dict[int, dict[str, Any]] = {}
    for pid, keys in meta["state_keys"].items():
        entry = {}
        for key in keys:
            name = f"{prefix}.state.{pid}.{key}"
            entry[key] = tensors[name] if name in tensors else meta["scalars"][pid][key]
        state[int(pid)] = entry
    groups = []
    for item in meta["param_groups"]:
        group = dict(item["group"])
        for key in item["tuples"]:
            group[key] = tuple(group[key])
        groups.append(group)
    return {"state": state, "param_groups": groups}


# ---- random generators ------------------------------------------------------------------------

def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    """Python, NumPy, torch (CPU and every CUDA device) generator states."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, internal, py_gauss = random.getstate()
    tensors["rng.python"] = torch.tensor(internal, dtype=torch.int64)
    meta = {"numpy": {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": {"version": version, "gauss": py_gauss}}
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    n = meta["numpy"]
    np.random.set_state((n["kind"], tensors["rng.numpy"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["gauss"]))
    p = meta["python"]
    random.setstate((p["version"], tuple(int(v) for v in tensors["rng.python"].tolist()), p["gauss"]))


# ---- the whole bundle ---------------------------------------------------------------------------

def save_state(folder: Path, progress: dict[str, Any], optimizer_sd: dict[str, Any] | None,
               extra_json: dict[str, Any] | None = None) -> None:
    """Write ``folder/training_state/`` (tensors + JSON) for :func:`load_state`."""
    out = Path(folder) / STATE_DIR
    out.mkdir(parents=True, exist_ok=True)
    tensors, rng_meta = rng_state()
    meta: dict[str, Any] = {"progress": progress, "rng": rng_meta, **(extra_json or {})}
    if optimizer_sd is not None:
        opt_tensors, opt_meta = flatten_optimizer(optimizer_sd)
        tensors.update(opt_tensors)
        meta["optimizer"] = opt_meta
    save_file(tensors, str(out / TENSORS_FILE))
    (out / JSON_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True))


def load_state(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    out = Path(folder) / STATE_DIR
    return load_file(str(out / TENSORS_FILE)), json.loads((out / JSON_FILE).read_text())


def has_state(folder: Path) -> bool:
    return (Path(folder) / STATE_DIR / JSON_FILE).is_file()


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished ``tmp`` folder into place (the old one is removed only afterwards)."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)
