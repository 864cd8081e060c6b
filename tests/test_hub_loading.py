"""Hub loading through the real huggingface_hub code: a loopback server and an offline cache."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from detectors import create_detector
from tests.helpers import run_isolated
from tests.hub_server import LoopbackHub, git_blob_sha

PROBE = """
import json, torch
from detectors import create_detector, CheckpointError
results = {}
for source in SOURCES:
    try:
        model = create_detector("tiny_test", source)
        torch.manual_seed(0)
        x = torch.randn(2, 3, 32, 32)
        results[source] = {"logits": model(x)["logits"].tolist(), "source": model.source}
    except CheckpointError as exc:
        results[source] = {"error": type(exc).__name__, "message": str(exc)}
print(json.dumps(results))
"""


def _probe(sources: list[str], env: dict[str, str]) -> dict:
    return run_isolated(f"SOURCES = {sources!r}\n" + PROBE, env)


def _logits(model) -> list:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        return model.eval()(x)["logits"].tolist()


def _saved_tiny(folder: Path, seed: int, **overrides) -> tuple[Path, list]:
    torch.manual_seed(seed)
    model = create_detector("tiny_test", "random", **overrides)
    model.save_pretrained(folder)
    return folder, _logits(model)


@pytest.fixture()
def hub(tmp_path):
    with LoopbackHub() as server:
        yield server


def test_loopback_hub_serves_pinned_revisions_branches_and_errors(hub, tmp_path):
    folder_a, logits_a = _saved_tiny(tmp_path / "a", seed=1)
    folder_b, logits_b = _saved_tiny(tmp_path / "b", seed=2)
    sha_a = hub.commit_folder("lens/tiny", folder_a)
    hub.commit_folder("lens/tiny", folder_a, branch="v1")
    sha_b = hub.commit_folder("lens/tiny", folder_b)
    assert sha_a != sha_b
    hub.commit("lens/pickle-only", {"config.json": (folder_a / "config.json").read_bytes(),
                                    "pytorch_model.bin": b"\x80\x04not really"})
    other = json.loads((folder_a / "config.json").read_text())
    other.update(name="lav_demo", detector_family="lav")
    hub.commit("lens/other-family", {"config.json": json.dumps(other).encode(),
                                     "model.safetensors": (folder_a / "model.safetensors").read_bytes()})

    sources = [f"hf-hub:lens/tiny@{sha_a}", "lens/tiny", "lens/tiny@v1", "lens/missing", "lens/pickle-only",
               "lens/other-family", f"lens/tiny@{'0' * 40}"]
    got = _probe(sources, {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "home")})

    assert got[sources[0]]["logits"] == logits_a
    assert got[sources[0]]["source"] == f"hf-hub:lens/tiny@{sha_a}"
    assert got["lens/tiny"]["logits"] == logits_b
    assert got["lens/tiny@v1"]["logits"] == logits_a
    assert got["lens/missing"]["error"] == "CheckpointNotFound"
    assert "lens/missing" in got["lens/missing"]["message"]
    assert got["lens/pickle-only"]["error"] == "UnsafeCheckpoint"
    assert "pickle" in got["lens/pickle-only"]["message"]
    assert got["lens/other-family"]["error"] == "CheckpointMismatch"
    assert "lav" in got["lens/other-family"]["message"]
    assert got[sources[-1]]["error"] == "CheckpointNotFound"
    # the server saw real resolve requests, including the pinned commit
    assert ("GET", f"/lens/tiny/resolve/{sha_a}/model.safetensors") in hub.requests


def _populate_cache(cache: Path, repo_id: str, folder: Path, sha: str, ref: str = "main") -> None:
    """Lay out a Hub cache by hand: blobs by etag, a snapshot of symlinks, a ref file."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / ref).write_text(sha)
    snapshot = repo_dir / "snapshots" / sha
    snapshot.mkdir(parents=True, exist_ok=True)
    for file in folder.iterdir():
        data = file.read_bytes()
        blob = repo_dir / "blobs" / git_blob_sha(data)
        blob.write_bytes(data)
        (snapshot / file.name).symlink_to(Path("..") / ".." / "blobs" / blob.name)


def test_offline_cache_loads_without_any_server(tmp_path):
    folder, logits = _saved_tiny(tmp_path / "m", seed=3)
    sha = "1234567890abcdef1234567890abcdef12345678"
    cache = tmp_path / "hub-cache"
    _populate_cache(cache, "lens/cached", folder, sha)
    sources = ["lens/cached", f"lens/cached@{sha}", "lens/not-cached"]
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_ENDPOINT": "http://127.0.0.1:9"}
    got = _probe(sources, env)
    assert got["lens/cached"]["logits"] == logits
    assert got[f"lens/cached@{sha}"]["logits"] == logits
    assert got["lens/not-cached"]["error"] == "CheckpointNotFound"
    assert "offline" in got["lens/not-cached"]["message"]


def test_download_then_offline_reuses_the_cache(hub, tmp_path):
    folder, logits = _saved_tiny(tmp_path / "m", seed=4)
    sha = hub.commit_folder("lens/roundtrip", folder)
    home = str(tmp_path / "home")
    online = _probe([f"lens/roundtrip@{sha}"], {"HF_ENDPOINT": hub.url, "HF_HOME": home})
    hub.stop()
    offline = _probe([f"lens/roundtrip@{sha}"], {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": home,
                                                 "HF_HUB_OFFLINE": "1"})
    assert online[f"lens/roundtrip@{sha}"]["logits"] == logits
    assert offline[f"lens/roundtrip@{sha}"]["logits"] == logits


PREFETCH = """
import json
from detectors.hub import prefetch
from detectors import CheckpointError
out = {}
for source in SOURCES:
    try:
        prefetch(source)
        out[source] = "ok"
    except CheckpointError as exc:
        out[source] = type(exc).__name__
print(json.dumps(out))
"""


def test_prefetch_downloads_what_a_later_offline_load_needs(hub, tmp_path):
    folder, logits = _saved_tiny(tmp_path / "m", seed=5)
    sha = hub.commit_folder("lens/prefetched", folder)
    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "home")}
    sources = [f"lens/prefetched@{sha}", "lens/missing", "demo", "random", str(folder)]
    got = run_isolated(f"SOURCES = {sources!r}\n" + PREFETCH, env)
    assert got == {sources[0]: "ok", "lens/missing": "CheckpointNotFound", "demo": "ok", "random": "ok",
                   str(folder): "ok"}
    hub.stop()
    offline = _probe([sources[0]], {**env, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"})
    assert offline[sources[0]]["logits"] == logits


def _sharded_tiny(folder: Path, seed: int) -> tuple[Path, list]:
    """A tiny checkpoint written as the Hub's index + shards (a 2 KB limit forces several)."""
    from detectors.weight_files import read_state, weight_file_names, write_state

    folder, logits = _saved_tiny(folder, seed)
    write_state(read_state(folder), folder, max_shard_bytes=2048)
    assert len(weight_file_names(folder)) > 1 and not (folder / "model.safetensors").exists()
    return folder, logits


def test_a_sharded_repo_loads_through_its_index_online_offline_and_from_the_cache(hub, tmp_path):
    from detectors.weight_files import weight_file_names

    folder, logits = _sharded_tiny(tmp_path / "s", seed=6)
    shards = weight_file_names(folder)
    sha = hub.commit_folder("lens/sharded", folder)
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    index = json.loads(files["model.safetensors.index.json"])
    escaping = {**index, "weight_map": {**index["weight_map"], "body.0.weight": "../../x.safetensors"}}
    hub.commit("lens/escaping", {**files, "model.safetensors.index.json": json.dumps(escaping).encode()})
    hub.commit("lens/pickle-shard", {**files, "model.safetensors.index.json": json.dumps(
        {**index, "weight_map": {**index["weight_map"], "body.0.weight": "pytorch_model.bin"}}).encode()})
    hub.commit("lens/lost-shard", {k: v for k, v in files.items() if k != shards[-1]})

    sources = [f"lens/sharded@{sha}", "lens/sharded", "lens/escaping", "lens/pickle-shard", "lens/lost-shard"]
    env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "home")}
    got = _probe(sources, env)
    assert got[sources[0]]["logits"] == logits and got["lens/sharded"]["logits"] == logits
    assert got["lens/sharded"]["source"] == "hf-hub:lens/sharded@main"
    for name in ("model.safetensors.index.json", *shards):  # every shard at the commit its config came from
        assert ("GET", f"/lens/sharded/resolve/{sha}/{name}") in hub.requests, name
    assert got["lens/escaping"]["error"] == "UnsafeCheckpoint" and "x.safetensors" in got["lens/escaping"]["message"]
    assert got["lens/pickle-shard"]["error"] == "UnsafeCheckpoint"
    assert not [p for _, p in hub.requests if p.endswith(("x.safetensors", ".bin"))], "a refused name is never fetched"
    assert got["lens/lost-shard"]["error"] == "CheckpointNotFound" and shards[-1] in got["lens/lost-shard"]["message"]

    hub.stop()  # the download serves offline; a hand-made cache of a sharded repo does too
    cache_sha = "abcdefabcdefabcdefabcdefabcdefabcdefabcd"
    _populate_cache(tmp_path / "home" / "hub", "lens/hand-cached", folder, cache_sha)
    offline = _probe([f"lens/sharded@{sha}", "lens/sharded", "lens/hand-cached", "lens/never-seen"],
                     {**env, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"})
    assert offline[f"lens/sharded@{sha}"]["logits"] == logits and offline["lens/sharded"]["logits"] == logits
    assert offline["lens/hand-cached"]["logits"] == logits
    assert offline["lens/never-seen"]["error"] == "CheckpointNotFound"
