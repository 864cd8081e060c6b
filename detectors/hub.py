"""Checkpoint I/O: resolve a source (demo / local folder / Hub repo@revision) to a folder, read
its config, fill a model's weights and side files safely.

Only ``config.json`` and safetensors weights are ever read (``model.safetensors``, or the Hub's
sharded ``model.safetensors.index.json`` + the shards it names: :mod:`detectors.weight_files`);
pickle files are refused, weights load with ``strict=True``, and every failure names the source
and what is wrong. Which class a checkpoint builds is the registry's business, one layer up
(:func:`detectors.factory.load_checkpoint`).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file

from .errors import CheckpointCorrupted, CheckpointMismatch, CheckpointNotFound, UnsafeCheckpoint
from .file_format import CONFIG_FILE, WEIGHTS_FILE, WEIGHTS_INDEX_FILE
from .weight_files import has_weights, is_sharded, parse_index, read_state, shard_names

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets" / "checkpoints"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # org/name


def demo_checkpoint_dir(family: str) -> Path:
    return ASSETS_DIR / family


def parse_hub_source(source: str) -> tuple[str, str | None] | None:
    """``hf-hub:org/repo@rev`` or ``org/repo@rev`` -> ``(repo_id, revision)``; else ``None``."""
    text = source[len("hf-hub:"):] if source.startswith("hf-hub:") else source
    repo, _, revision = text.partition("@")
    if not HUB_ID.match(repo):
        return None
    return repo, (revision or None)


def resolve_source(source: str, family: str | None) -> tuple[Path, str]:
    """A local folder holding the checkpoint files, and a label for where they came from."""
    if source == "demo":
        if family is None:
            raise CheckpointNotFound("a demo checkpoint needs a detector name")
        folder = demo_checkpoint_dir(family)
        if not has_weights(folder):
            raise CheckpointNotFound(f"no demo checkpoint is shipped for {family!r} yet (looked in {folder})")
        return folder, "demo"
    path = Path(source).expanduser()
    if path.exists() or source.startswith((".", "/", "~")):
        if not path.is_dir():
            raise CheckpointNotFound(f"{source}: not a checkpoint folder (expected {CONFIG_FILE} and "
                                     f"{WEIGHTS_FILE} or {WEIGHTS_INDEX_FILE})")
        return path, f"local:{path}"
    hub = parse_hub_source(source)
    if hub is None:
        raise CheckpointNotFound(f"{source!r} is neither a folder nor a Hub repo id like org/name@revision")
    return _download(*hub), f"hf-hub:{hub[0]}@{hub[1] or 'main'}"


def prefetch(source: str) -> None:
    """Download a Hub source's checkpoint into the local cache now (nothing to do for ``demo``,
    ``random`` or a folder), so the network wait happens on the caller's thread rather than on
    the one that builds models. Errors are those :func:`resolve_source` raises."""
    if source in ("demo", "random") or Path(source).expanduser().exists():
        return
    hub = parse_hub_source(source)
    if hub is not None:
        _download(*hub)


def _download(repo_id: str, revision: str | None) -> Path:
    """The cache snapshot folder of ``repo_id@revision`` once it holds the config and the weights:
    ``model.safetensors``, or (a repo without it) the index and every shard it names."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo_id}@{revision or 'main'}"
    try:
        config_path = Path(hf_hub_download(repo_id, CONFIG_FILE, revision=revision))
    except LocalEntryNotFoundError:  # subclass of EntryNotFoundError: test it first
        raise CheckpointNotFound(f"{where} is not in the local cache and the Hub cannot be reached (offline?)") from None
    except RepositoryNotFoundError:
        raise CheckpointNotFound(f"{where}: no such repository on the Hub (or it is private)") from None
    except RevisionNotFoundError:
        raise CheckpointNotFound(f"{where}: the repository has no revision {revision!r}") from None
    except EntryNotFoundError:
        raise CheckpointNotFound(f"{where} has no {CONFIG_FILE}; it is not a Forgery Lens checkpoint") from None
    except HfHubHTTPError as exc:
        raise CheckpointNotFound(f"{where} could not be fetched from the Hub: {_short(exc)}") from None
    except (OSError, ValueError) as exc:
        raise CheckpointNotFound(f"{where} could not be fetched: {_short(exc)}") from None
    commit = _commit_of(config_path, revision)
    if _cached_here(repo_id, WEIGHTS_INDEX_FILE, commit) and not _cached_here(repo_id, WEIGHTS_FILE, commit):
        _download_shards(repo_id, commit, where, cache_miss=True)  # sharded and cached: no retries for the file
        return config_path.parent
    try:
        hf_hub_download(repo_id, WEIGHTS_FILE, revision=revision)
        return config_path.parent
    except LocalEntryNotFoundError:
        cache_miss = True  # it may be a sharded checkpoint whose index and shards are cached
    except EntryNotFoundError:
        cache_miss = False
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise CheckpointNotFound(f"{where}: {WEIGHTS_FILE} could not be fetched: {_short(exc)}") from None
    _download_shards(repo_id, commit, where, cache_miss)
    return config_path.parent


def _download_shards(repo_id: str, revision: str | None, where: str, cache_miss: bool) -> None:
    """A repo without ``model.safetensors``: its index, then every shard the index names (names
    checked before anything is fetched), all at the commit its config came from."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    not_cached = f"{where}: {WEIGHTS_FILE} is not in the local cache and the Hub cannot be reached"
    try:
        index = Path(hf_hub_download(repo_id, WEIGHTS_INDEX_FILE, revision=revision))
    except LocalEntryNotFoundError:
        raise CheckpointNotFound(not_cached) from None
    except EntryNotFoundError:
        if cache_miss:
            raise CheckpointNotFound(not_cached) from None
        raise UnsafeCheckpoint(f"{where} has no {WEIGHTS_FILE}; only safetensors weights are loaded, "
                               "never pickle files") from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise CheckpointNotFound(f"{where}: {WEIGHTS_INDEX_FILE} could not be fetched: {_short(exc)}") from None
    try:
        text = index.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointCorrupted(f"{where}: {WEIGHTS_INDEX_FILE} cannot be read ({exc})") from None
    for name in shard_names(parse_index(text, where)):
        try:
            hf_hub_download(repo_id, name, revision=revision)
        except LocalEntryNotFoundError:
            raise CheckpointNotFound(f"{where}: shard {name} is not in the local cache and the Hub cannot be "
                                     "reached") from None
        except EntryNotFoundError:
            raise CheckpointNotFound(f"{where}: shard {name}, named by {WEIGHTS_INDEX_FILE}, is not in the "
                                     "repository") from None
        except (HfHubHTTPError, OSError, ValueError) as exc:
            raise CheckpointNotFound(f"{where}: shard {name} could not be fetched: {_short(exc)}") from None


def _cached_here(repo_id: str, name: str, commit: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, name, revision=commit), str)


def _commit_of(downloaded: Path, revision: str | None) -> str | None:
    """The commit of the cache snapshot ``downloaded`` lies in (its folder's name), so the files
    fetched after it come from the same commit even if the branch moves meanwhile."""
    name = downloaded.parent.name
    return name if re.fullmatch(r"[0-9a-f]{40}", name) else revision


def _short(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointNotFound(f"{folder}: no {CONFIG_FILE}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointCorrupted(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or "name" not in data:
        raise CheckpointMismatch(f"{path}: not a Forgery Lens detector config (no 'name' field)")
    return data


def load_side_files(model, folder: Path, source: str) -> None:
    """Files a family keeps beside its weights (``model.side_files``, e.g. a tokenizer).

    Hub sources fetch them from the same revision (so they land in the same snapshot folder);
    the model reads them in ``model.load_side_files(folder)`` (both declared on
    :class:`~detectors.base.Detector`, empty by default). Families without any skip this.
    """
    names = tuple(model.side_files)
    if not names:
        return
    hub = None if (source == "demo" or Path(source).expanduser().exists()) else parse_hub_source(source)
    if hub is not None:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

        for name in names:
            if not (folder / name).is_file():
                try:
                    folder = Path(hf_hub_download(hub[0], name, revision=hub[1])).parent
                except (EntryNotFoundError, LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError):
                    continue  # the model says whether it can do without
    try:
        model.load_side_files(folder)
    except (OSError, ValueError) as exc:
        raise CheckpointCorrupted(f"{folder}: {_short(exc)}") from None


def load_weights(model, weights: Path) -> None:
    """Fill ``model`` from a checkpoint folder's weights (one file or index + shards, see
    :func:`detectors.weight_files.read_state`) or from one safetensors file; every key and shape
    must match exactly."""
    weights = Path(weights)
    if weights.is_dir():
        state = read_state(weights)
        weights = weights / (WEIGHTS_INDEX_FILE if is_sharded(weights) else WEIGHTS_FILE)  # what messages name
    else:
        try:
            state = load_file(str(weights))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointCorrupted(f"{weights}: unreadable safetensors file ({exc})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s) e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensor(s) e.g. {', '.join(unexpected[:3])}")
        if shapes:
            parts.append(f"shape mismatch {'; '.join(shapes[:3])}")
        raise CheckpointMismatch(f"{weights} does not fit {model.config.name}: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
