"""Which files hold a checkpoint's weights, and reading and writing them (safetensors only).

A checkpoint folder keeps its tensors in one ``model.safetensors`` or, in the layout the Hub and
transformers use for sharded weights, in ``model.safetensors.index.json`` (``{"metadata": {...},
"weight_map": {tensor name: shard file}}``) plus the shards it names
(``model-00001-of-00003.safetensors`` ...). Where an index is present, it is what is read.
:func:`write_state` keeps every file under :data:`~detectors.file_format.MAX_SHARD_BYTES`, so
shipped checkpoints stay under the repository's per-file limit.

An index is trusted no further than a weights file: it must name plain ``.safetensors`` files in
its own folder, every one present, each holding exactly the tensors the index assigns to it.
Failures raise the typed errors of :mod:`detectors.errors`, naming the folder and what is wrong.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError

from .errors import CheckpointCorrupted, CheckpointNotFound, UnsafeCheckpoint
from .file_format import MAX_SHARD_BYTES, WEIGHTS_FILE, WEIGHTS_INDEX_FILE

if TYPE_CHECKING:
    import torch

#: The Hub's shard names for ``model.safetensors``: what :func:`write_state` writes and replaces.
SHARD_FILE = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")
_SHARD_PATTERN = WEIGHTS_FILE.replace(".safetensors", "{suffix}.safetensors")  # huggingface_hub's form
_SUFFIX = ".safetensors"


def has_weights(folder: Path) -> bool:
    """Whether ``folder`` holds weights in either layout (not whether they are valid)."""
    folder = Path(folder)
    return (folder / WEIGHTS_INDEX_FILE).is_file() or (folder / WEIGHTS_FILE).is_file()


def is_sharded(folder: Path) -> bool:
    return (Path(folder) / WEIGHTS_INDEX_FILE).is_file()


def weight_file_names(folder: Path, *, with_index: bool = False) -> list[str]:
    """The files holding ``folder``'s tensors: the shards its index names (in index order), else
    ``[model.safetensors]``. ``with_index`` puts the index first when there is one: the files a
    copy or an upload of the weights needs."""
    folder = Path(folder)
    if not is_sharded(folder):
        return [WEIGHTS_FILE]
    names = shard_names(read_index(folder))
    return [WEIGHTS_INDEX_FILE, *names] if with_index else names


def weights_size(folder: Path) -> int:
    """Bytes of the weight files (the index included), as stored."""
    folder = Path(folder)
    return sum((folder / name).stat().st_size for name in weight_file_names(folder, with_index=True))


# ---- the index ---------------------------------------------------------------------------------
def check_shard_name(name: str, where: str) -> str:
    """``name`` if it is a plain ``.safetensors`` file name (no folder part, ``..`` or absolute
    path): an index must never lead the loader out of its folder, nor to a pickle file."""
    if not name.endswith(_SUFFIX) or name == _SUFFIX:
        raise UnsafeCheckpoint(f"{where}: {WEIGHTS_INDEX_FILE} names {name!r}, not a .safetensors file; only "
                               "safetensors weights are loaded, never pickle files")
    if ("/" in name or "\\" in name or "\0" in name or name.startswith(("..", "~")) or ":" in name
            or Path(name).is_absolute() or Path(name).name != name):
        raise UnsafeCheckpoint(f"{where}: {WEIGHTS_INDEX_FILE} names {name!r}, which is not a plain file name "
                               "inside the checkpoint folder")
    return name


def parse_index(text: str, where: str) -> dict[str, str]:
    """The validated ``weight_map`` (tensor name -> shard file name) of an index's JSON text."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise CheckpointCorrupted(f"{where}: {WEIGHTS_INDEX_FILE} names {key!r} twice")
            seen[key] = value
        return seen

    try:
        data = json.loads(text, object_pairs_hook=no_duplicates)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointCorrupted(f"{where}: {WEIGHTS_INDEX_FILE} is not valid JSON ({exc})") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in weight_map.items()):
        raise CheckpointCorrupted(f"{where}: {WEIGHTS_INDEX_FILE} has no 'weight_map' object of tensor name -> "
                                  "file name")
    if not weight_map:
        raise CheckpointCorrupted(f"{where}: the 'weight_map' of {WEIGHTS_INDEX_FILE} names no tensors")
    if "metadata" in data and not isinstance(data["metadata"], dict):
        raise CheckpointCorrupted(f"{where}: the 'metadata' of {WEIGHTS_INDEX_FILE} is not an object")
    for name in dict.fromkeys(weight_map.values()):
        check_shard_name(name, where)
    return weight_map


def read_index(folder: Path) -> dict[str, str]:
    """The validated ``weight_map`` of ``folder``'s index."""
    path = Path(folder) / WEIGHTS_INDEX_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointNotFound(f"{folder}: no {WEIGHTS_INDEX_FILE}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointCorrupted(f"{folder}: {WEIGHTS_INDEX_FILE} cannot be read ({exc})") from None
    return parse_index(text, str(folder))


def shard_names(weight_map: Mapping[str, str]) -> list[str]:
    """Each shard file once, in the order the index first names it."""
    return list(dict.fromkeys(weight_map.values()))


# ---- reading -----------------------------------------------------------------------------------
def read_state(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of ``folder``'s checkpoint, from its index and shards or its one file."""
    folder = Path(folder)
    if not is_sharded(folder):
        path = folder / WEIGHTS_FILE
        if not path.is_file():
            raise CheckpointNotFound(f"{folder}: no {WEIGHTS_FILE} (nor {WEIGHTS_INDEX_FILE} with shards)")
        return _read_file(path)[0]
    weight_map = read_index(folder)
    names = shard_names(weight_map)
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise CheckpointNotFound(f"{folder}: {len(missing)} shard(s) named by {WEIGHTS_INDEX_FILE} are missing: "
                                 f"{', '.join(missing[:3])}")
    assigned: dict[str, set[str]] = {name: set() for name in names}
    for key, name in weight_map.items():
        assigned[name].add(key)
    state: dict[str, torch.Tensor] = {}
    for name in names:
        tensors, keys = _read_file(folder / name)
        if keys != assigned[name]:
            extra, lacking = sorted(keys - assigned[name]), sorted(assigned[name] - keys)
            parts = [f"holds {len(extra)} tensor(s) the index assigns elsewhere or not at all, e.g. "
                     f"{', '.join(extra[:3])}"] if extra else []
            parts += [f"lacks {len(lacking)} tensor(s) the index assigns to it, e.g. {', '.join(lacking[:3])}"
                      ] if lacking else []
            raise CheckpointCorrupted(f"{folder}: shard {name} does not match {WEIGHTS_INDEX_FILE}: "
                                      + "; ".join(parts))
        state.update(tensors)
    return state


def _read_file(path: Path) -> tuple[dict[str, torch.Tensor], set[str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            return {k: f.get_tensor(k) for k in keys}, set(keys)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointCorrupted(f"{path}: unreadable safetensors file ({exc})") from None


# ---- writing -----------------------------------------------------------------------------------
def write_state(state: Mapping[str, torch.Tensor], folder: Path, max_shard_bytes: int = MAX_SHARD_BYTES,
                metadata: Mapping[str, str] | None = None) -> list[str]:
    """Write ``state`` into ``folder``: one ``model.safetensors`` when its tensors fit in
    ``max_shard_bytes``, else shards of at most that size plus the index (a single tensor larger
    than that gets a shard of its own). Weight files of the layout not written (or shards of an
    earlier, longer split) are removed afterwards; nothing else in the folder is touched.
    Returns the names written, the index last.

    ``metadata`` (default ``{"format": "pt"}``) goes into every file's header and the index's
    ``metadata``. Every key of ``state`` is written: tensors sharing memory are stored as copies.
    """
    import torch
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"format": "pt"} if metadata is None else {str(k): str(v) for k, v in metadata.items()}
    tensors = _own_storage(state, torch)
    split = split_torch_state_dict_into_shards(tensors, filename_pattern=_SHARD_PATTERN,
                                               max_shard_size=int(max_shard_bytes))
    placed = [k for keys in split.filename_to_tensors.values() for k in keys]
    if len(placed) != len(tensors) or set(placed) != set(tensors):
        lost = sorted(set(tensors) - set(placed))
        raise ValueError(f"splitting the weights for {folder} would drop or repeat tensors (e.g. {lost[:3]})")
    before = _weight_files_present(folder)
    if split.is_sharded and (folder / WEIGHTS_INDEX_FILE).is_file():
        (folder / WEIGHTS_INDEX_FILE).unlink()  # never an old index over half-rewritten shards
    written = []
    for name, keys in split.filename_to_tensors.items():
        shard = {k: tensors[k] for k in keys}

        def save(tmp: Path, shard: dict[str, torch.Tensor] = shard) -> None:
            save_file(shard, str(tmp), metadata=meta)

        _replace(folder / name, save)
        written.append(name)
    if split.is_sharded:
        index = {"metadata": {**meta, "total_size": split.metadata["total_size"]},
                 "weight_map": dict(split.tensor_to_filename)}
        text = json.dumps(index, indent=2) + "\n"
        _replace(folder / WEIGHTS_INDEX_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        written.append(WEIGHTS_INDEX_FILE)
    stale = sorted(before - set(written), key=lambda n: n != WEIGHTS_INDEX_FILE)  # the index goes first
    for name in stale:
        (folder / name).unlink(missing_ok=True)
    return written


def _replace(path: Path, write: Callable[[Path], object]) -> None:
    """Write ``path`` through a temporary file and a rename: tensors read earlier are memory maps
    of the old file (safetensors maps files), which must not change under them."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _own_storage(state: Mapping[str, torch.Tensor], torch) -> dict[str, torch.Tensor]:
    """Contiguous tensors, each with memory of its own: safetensors refuses shared memory, and
    huggingface_hub's saver would drop all but one of the names sharing it."""
    out: dict[str, torch.Tensor] = {}
    seen: set[tuple[str, int]] = set()
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{key}: not a tensor ({type(value).__name__})")
        tensor = value.detach().contiguous()
        storage = tensor.untyped_storage()
        where = (tensor.device.type, storage.data_ptr())
        if tensor.numel() and (where in seen or storage.nbytes() != tensor.numel() * tensor.element_size()):
            tensor = tensor.clone()
            where = (tensor.device.type, tensor.untyped_storage().data_ptr())
        if tensor.numel():
            seen.add(where)
        out[key] = tensor
    return out


def _weight_files_present(folder: Path) -> set[str]:
    """Weight files of either layout now in ``folder``: what a new write replaces."""
    names = {p.name for p in folder.iterdir() if p.is_file() and SHARD_FILE.match(p.name)}
    names |= {n for n in (WEIGHTS_FILE, WEIGHTS_INDEX_FILE) if (folder / n).is_file()}
    if WEIGHTS_INDEX_FILE in names:
        # a broken index: its own name and the Hub-named shards are still replaced
        with contextlib.suppress(CheckpointCorrupted, CheckpointNotFound, UnsafeCheckpoint):
            names |= {n for n in shard_names(read_index(folder)) if (folder / n).is_file()}
    return names
