"""The checkpoint policy of public deployments (detectors/source_policy.py): what visitors may load,
the download limit checked before downloading, neutral messages, and the app's defaults."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from detectors import CheckpointError, create_detector
from detectors.source_policy import (
    PROJECT_ORG,
    DownloadTooLarge,
    SourceNotAllowed,
    SourcePolicy,
    neutral_reason,
    parse_allow_hub,
)
from pipeline import DetectorSlot, ModelCache
from tests.helpers import run_isolated
from tests.hub_server import LoopbackHub

PUBLIC = SourcePolicy.public()
TINY = DetectorSlot("tiny", "tiny_test", "random", "Tiny")


def _saved_tiny(folder: Path, seed: int = 0) -> tuple[Path, list]:
    torch.manual_seed(seed)
    model = create_detector("tiny_test", "random")
    model.save_pretrained(folder)
    torch.manual_seed(0)
    with torch.no_grad():
        logits = model.eval()(torch.randn(2, 3, 32, 32))["logits"].tolist()
    return folder, logits


def _leaks(message: str, path: str) -> list[str]:
    """The parts of ``path`` (its folder names) that appear in ``message``."""
    return [part for part in Path(path).parts if part.strip("/\\.~") and part in message]


# ---- the check, no network ------------------------------------------------------------------------
def test_a_local_path_is_refused_in_public_mode_with_one_neutral_message(tmp_path, monkeypatch):
    existing, _ = _saved_tiny(tmp_path / "secret-checkpoint")
    monkeypatch.chdir(tmp_path)
    sources = [str(existing), str(tmp_path / "no-such-folder"), "./secret-checkpoint", "~/.ssh", "../../etc",
               "/etc/passwd", "C:\\Windows", "secret-checkpoint", "hf-hub:/etc"]
    messages = set()
    for source in sources:
        with pytest.raises(SourceNotAllowed) as info:
            PUBLIC.check(source)
        assert isinstance(info.value, CheckpointError)
        assert not _leaks(str(info.value), source), source
        messages.add(str(info.value))
    assert messages == {PUBLIC.refusal()}, "the same words whether the path exists or not"
    assert messages.pop().startswith("This server only loads the demo checkpoints and the Hub repositories its "
                                     f"operator allowed: any repository of `{PROJECT_ORG}`")


def test_a_repo_off_the_allow_list_is_refused_before_any_request():
    policy = SourcePolicy(False, ("forgery-lens", "friends/one-model"), 200)
    for source in ["someone/else", "friends/other-model", "hf-hub:evil/weights@main", "forgery-lens-fake/x",
                   "forgery-lens/x@../../refs", "forgery-lens/.."]:
        with pytest.raises(SourceNotAllowed, match="its operator allowed: any repository of `forgery-lens`, "
                                                   "`friends/one-model`"):
            policy.check(source)
    for always in ("demo", "random", " demo "):
        assert policy.check(always) == always.strip()
    with pytest.raises(SourceNotAllowed, match=r"^This server only loads the demo checkpoints\.$"):
        SourcePolicy(False, (), 200).check("forgery-lens/x")


def test_allow_list_entries_match_repos_and_whole_organisations():
    org = SourcePolicy(False, ("forgery-lens",), 1)
    star = SourcePolicy(False, ("forgery-lens/*",), 1)
    repo = SourcePolicy(False, ("lab/model",), 1)
    for policy in (org, star):
        assert policy.hub_allowed("forgery-lens/lav-demo") and policy.hub_allowed("Forgery-Lens/anything")
        assert not policy.hub_allowed("forgery-lens-evil/lav") and not policy.hub_allowed("other/forgery-lens")
    assert repo.hub_allowed("lab/model") and not repo.hub_allowed("lab/model2") and not repo.hub_allowed("lab/x")
    assert SourcePolicy.local_use().hub_allowed("anyone/anything")
    assert parse_allow_hub(" forgery-lens, lab/model ;org/* ") == ("forgery-lens", "lab/model", "org/*")
    for bad in ("../x", "a/b/c", "org/na me"):
        with pytest.raises(ValueError):
            parse_allow_hub(bad)


def test_local_use_keeps_folders_and_the_loaders_own_messages(tmp_path):
    local = SourcePolicy.local_use()
    assert local.check(str(tmp_path)) == str(tmp_path)
    assert local.check("./not-there") == "./not-there"  # the loader says "not a checkpoint folder"
    assert local.detailed_errors and not PUBLIC.detailed_errors
    with pytest.raises(ValueError, match="only for local use"):
        SourcePolicy.for_server("0.0.0.0", allow_hub=("*",))


def test_neutral_reasons_are_fixed_sentences_by_type():
    from detectors import CheckpointCorrupted, CheckpointMismatch, CheckpointNotFound, UnsafeCheckpoint

    secret = "/srv/secret/models/x: unreadable"
    for exc in (CheckpointCorrupted(secret), CheckpointMismatch(secret), CheckpointNotFound(secret),
                UnsafeCheckpoint(secret), RuntimeError(secret), OSError(secret)):
        assert "secret" not in neutral_reason(exc)
    assert neutral_reason(CheckpointNotFound(secret)).startswith("the repository has no Forgery Lens checkpoint")
    assert neutral_reason(SourceNotAllowed(PUBLIC.refusal())) == PUBLIC.refusal()


# ---- the app's model cache ---------------------------------------------------------------------------
def test_the_model_cache_refuses_neutrally_and_falls_back(tmp_path):
    existing, _ = _saved_tiny(tmp_path / "private-models")
    cache = ModelCache(policy=PUBLIC)
    seen = []
    for source in (str(existing), str(tmp_path / "missing-models")):
        loaded = cache.get(TINY, source)
        assert loaded.model is cache.get(TINY).model is not None and loaded.source == "random"
        assert not _leaks(loaded.message, source)
        seen.append(loaded.message)
    assert seen[0] == seen[1] == f"{PUBLIC.refusal()} Showing the random checkpoint instead."
    # the same folder is loaded where local folders are allowed
    assert ModelCache(policy=SourcePolicy.local_use()).get(TINY, str(existing)).source.startswith("local:")


def test_a_failing_allowed_repo_shows_a_fixed_sentence(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # nothing is cached: the loader fails
    loaded = ModelCache(policy=PUBLIC).get(TINY, "forgery-lens/not-cached@v1")
    assert loaded.model is not None and loaded.source == "random"
    assert loaded.message == ("That checkpoint could not be loaded (the repository has no Forgery Lens checkpoint at "
                              "that revision, or it could not be reached). Showing the random checkpoint instead.")
    detailed = ModelCache().get(TINY, "forgery-lens/not-cached@v1")
    assert "CheckpointNotFound" in detailed.message and "offline" in detailed.message  # local use: the details


# ---- Hub sources through the loopback Hub -------------------------------------------------------------
HUB_PROBE = """
import json, torch
from detectors import CheckpointError, create_detector
from detectors.source_policy import SourcePolicy
from pipeline import DetectorSlot, ModelCache
slot = DetectorSlot("tiny", "tiny_test", "random", "Tiny")
out = {}
def attempt(key, fn):
    try:
        out[key] = fn()
    except CheckpointError as exc:
        out[key] = {"error": type(exc).__name__, "message": str(exc)}
def load(policy, source):
    loaded = ModelCache(policy=policy).get(slot, source)
    torch.manual_seed(0)
    with torch.no_grad():
        logits = loaded.model.eval()(torch.randn(2, 3, 32, 32))["logits"].tolist()
    return {"source": loaded.source, "message": loaded.message, "logits": logits}
for key, (policy, call, args) in CALLS.items():
    if call == "offline":  # switch offline mode within this process (read at import otherwise)
        from huggingface_hub import constants
        constants.HF_HUB_OFFLINE = args[0]
        continue
    policy = SourcePolicy(*policy)
    attempt(key, (lambda p=policy, a=args: load(p, *a)) if call == "load" else
                 (lambda p=policy, c=call, a=args: getattr(p, c)(*a)))
print(json.dumps(out))
"""


def _hub_probe(calls: dict, env: dict) -> dict:
    return run_isolated(f"CALLS = {calls!r}\n" + HUB_PROBE, {"HF_HUB_OFFLINE": "0", **env})


def test_hub_sizes_are_checked_before_download_and_cached_repos_load_offline(tmp_path):
    small, logits = _saved_tiny(tmp_path / "small", seed=1)
    sizes = {p.name: p.stat().st_size for p in small.iterdir()}
    tokenizer = b"{}" * 4096
    public = (False, ("lens",), 200.0)
    tight = (False, ("lens",), (sizes["model.safetensors"] + sizes["config.json"]) / 2 / 2**20)
    with LoopbackHub() as hub:
        hub.commit_folder("lens/small", small)
        hub.commit("lens/small", {"tokenizer.json": tokenizer})
        hub.commit_folder("lens/big", small)
        hub.commit_folder("elsewhere/model", small)
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "home")}
        got = _hub_probe({
            "too big": (tight, "check", ["lens/big"]),
            "not listed": (public, "check", ["elsewhere/model"]),
            "sizes": (public, "check_download_size", ["lens/small", None, ["tokenizer.json", "vocab.json"]]),
            "allowed": (public, "load", ["lens/small"]),
            "cached": (public, "check_download_size", ["lens/small", None, []]),
        }, env)
        requests = list(hub.requests)
    assert got["too big"]["error"] == "DownloadTooLarge" and issubclass(DownloadTooLarge, CheckpointError)
    assert f"download limit of {tight[2]:g} MB" in got["too big"]["message"]
    assert not [r for r in requests if r[1].startswith("/lens/big/") and r[0] == "GET"], "nothing of it downloaded"
    assert ("HEAD", "/lens/big/resolve/main/model.safetensors") in requests
    assert got["not listed"]["error"] == "SourceNotAllowed"
    assert not [r for r in requests if "elsewhere" in r[1]], "a refused repo is never asked about"
    assert got["sizes"] == sizes["model.safetensors"] + sizes["config.json"] + len(tokenizer)
    assert got["allowed"] == {"source": "hf-hub:lens/small@main", "message": "", "logits": logits}
    assert got["cached"] == 0, "files already in the cache are not downloaded again"

    # the Hub gone: with HF_HUB_OFFLINE=1, or merely unreachable, the allow-listed cached repo still loads
    got = _hub_probe({"offline": (public, "load", ["lens/small"]),
                      "offline, not cached": (public, "load", ["lens/big"]),
                      "switch": (public, "offline", [False]),
                      "unreachable": (public, "load", ["lens/small"]),
                      "unreachable, not cached": (public, "load", ["lens/big"])},
                     {**env, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"})
    for case in ("offline", "unreachable"):
        assert got[case] == {"source": "hf-hub:lens/small@main", "message": "", "logits": logits}, case
        assert got[f"{case}, not cached"]["source"] == "random"
        assert got[f"{case}, not cached"]["message"].startswith("That checkpoint could not be loaded (the repository "
                                                                "has no Forgery Lens checkpoint")


def test_a_sharded_repo_counts_its_index_and_every_shard(tmp_path):
    from detectors.weight_files import read_state, weight_file_names, write_state

    folder, logits = _saved_tiny(tmp_path / "sharded", seed=2)
    write_state(read_state(folder), folder, max_shard_bytes=2048)  # the Hub's index + several shards
    shards = weight_file_names(folder)
    sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
    weights = sizes["model.safetensors.index.json"] + sum(sizes[name] for name in shards)
    assert len(shards) > 1 and "model.safetensors" not in sizes
    public = (False, ("lens",), 200.0)
    tight = (False, ("lens",), (weights + sizes["config.json"]) * 0.75 / 2**20)  # room for the index, not all shards
    with LoopbackHub() as hub:
        hub.commit_folder("lens/sharded", folder)
        hub.commit_folder("lens/sharded-big", folder)
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "home")}
        got = _hub_probe({
            "sizes": (public, "check_download_size", ["lens/sharded", None, []]),
            "too big": (tight, "check", ["lens/sharded-big"]),
            "allowed": (public, "load", ["lens/sharded"]),
            "cached": (public, "check_download_size", ["lens/sharded", None, []]),
        }, env)
        requests = list(hub.requests)
    assert got["sizes"] == weights + sizes["config.json"]
    heads = [path for method, path in requests if method == "HEAD" and path.startswith("/lens/sharded/resolve/")]
    for name in ("model.safetensors", "model.safetensors.index.json", *shards):  # sizes asked, one by one
        assert any(path.endswith("/" + name) for path in heads), name
    assert got["too big"]["error"] == "DownloadTooLarge"
    big_gets = [r[1] for r in requests if r[0] == "GET" and r[1].startswith("/lens/sharded-big/")]
    assert not [path for path in big_gets if "-of-" in path], "no shard of it downloaded"
    assert got["allowed"] == {"source": "hf-hub:lens/sharded@main", "message": "", "logits": logits}
    assert got["cached"] == 0, "a cached sharded checkpoint downloads nothing more"

    got = _hub_probe({"offline": (public, "load", ["lens/sharded"]),
                      "switch": (public, "offline", [False]),
                      "unreachable": (public, "load", ["lens/sharded"]),
                      "unreachable size": (public, "check_download_size", ["lens/sharded", None, []])},
                     {**env, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"})
    for case in ("offline", "unreachable"):
        assert got[case] == {"source": "hf-hub:lens/sharded@main", "message": "", "logits": logits}, case
    assert got["unreachable size"] == 0


# ---- the app's defaults and flags ------------------------------------------------------------------------
@pytest.fixture()
def parse_args(monkeypatch):
    for name in ("GRADIO_SERVER_NAME", "SPACE_ID", "FORGERY_LENS_ALLOW_HUB", "FORGERY_LENS_MAX_DOWNLOAD_MB"):
        monkeypatch.delenv(name, raising=False)
    import app

    return app.parse_args


def test_app_defaults_follow_where_it_listens(parse_args, monkeypatch):
    local = SourcePolicy(True, ("*",), 2048.0)
    public = SourcePolicy(False, (PROJECT_ORG,), 200.0)
    assert parse_args([]).policy == local
    for host in ("127.0.0.1", "localhost", "::1"):
        assert parse_args(["--host", host]).policy == local
    for host in ("0.0.0.0", "192.168.1.20", "::"):
        assert parse_args(["--host", host]).policy == public
    monkeypatch.setenv("SPACE_ID", "forgery-lens/demo")
    assert parse_args(["--host", "127.0.0.1"]).policy == public
    assert parse_args([]).policy == public


def test_app_flags_and_environment_override_the_defaults(parse_args, monkeypatch):
    got = parse_args(["--no-local-checkpoints", "--allow-hub", "forgery-lens,lab/model", "--max-download-mb", "50"])
    assert got.policy == SourcePolicy(False, ("forgery-lens", "lab/model"), 50.0)
    assert parse_args(["--host", "0.0.0.0", "--allow-local-checkpoints"]).policy.allow_local
    assert parse_args(["--host", "0.0.0.0", "--allow-hub", "none"]).policy.allow_hub == ()
    monkeypatch.setenv("FORGERY_LENS_ALLOW_HUB", "lab")
    monkeypatch.setenv("FORGERY_LENS_MAX_DOWNLOAD_MB", "12.5")
    assert parse_args(["--host", "0.0.0.0"]).policy == SourcePolicy(False, ("lab",), 12.5)
    for bad in (["--host", "0.0.0.0", "--allow-hub", "*"], ["--allow-hub", "../x"], ["--max-download-mb", "0"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


# ---- the served app -------------------------------------------------------------------------------------------
def test_served_app_refuses_a_typed_folder_neutrally(tmp_path, astronaut):
    pytest.importorskip("gradio_client")
    from gradio_client import Client, handle_file
    from PIL import Image

    from tests.app_server import start_app

    folder, _ = _saved_tiny(tmp_path / "server-side-folder")
    photo = tmp_path / "photo.png"
    Image.fromarray(astronaut).save(photo)
    app = start_app("--with-test-detector", "--families", "tiny", "--no-warm-up", "--no-local-checkpoints",
                    "--allow-hub", "forgery-lens", env={"GRADIO_TEMP_DIR": str(tmp_path / "gradio")})
    try:
        client = Client(app.url, verbose=False)
        result, _ = client.predict(handle_file(str(photo)), api_name="/analyze", source_tiny=str(folder))
        config = json.dumps(client.config)
    finally:
        app.stop()
    tiny = next(d for d in result["detectors"] if d["family"] == "tiny")
    assert tiny["status"] == "ok" and tiny["source"] == "random"
    refusal = SourcePolicy(False, ("forgery-lens",), 200.0).refusal()
    assert tiny["message"] == f"{refusal} Showing the random checkpoint instead."
    assert not _leaks(tiny["message"], str(folder))
    assert "random \\u00b7 forgery-lens/name@revision" in config or "random · forgery-lens/name@revision" in config
    assert "/local/folder" not in config
