"""Where converted backbones are kept: the cache folder, its file names, provenance and hashes."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .errors import NotCached
from .sources import get_backbone

CACHE_ENV = "FORGERY_LENS_PRETRAINED"
DEFAULT_CACHE = Path("~/.cache/forgery-lens/pretrained")
MODEL_FILE = "model.safetensors"
REFERENCE_FILE = "reference.safetensors"
PROVENANCE_FILE = "provenance.json"


def cache_root(root: str | Path | None = None) -> Path:
    if root is not None:
        return Path(root).expanduser()
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def cache_dir(name: str, root: str | Path | None = None) -> Path:
    return cache_root(root) / get_backbone(name).name


def is_cached(name: str, root: str | Path | None = None) -> bool:
    folder = cache_dir(name, root)
    return (folder / MODEL_FILE).is_file() and (folder / PROVENANCE_FILE).is_file()


def read_provenance(name: str, root: str | Path | None = None) -> dict:
    path = cache_dir(name, root) / PROVENANCE_FILE
    if not path.is_file():
        raise NotCached(f"backbone {name!r} is not in {cache_dir(name, root)}: "
                        f"run `python -m training pretrained download {name}`")
    return json.loads(path.read_text(encoding="utf-8"))


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
