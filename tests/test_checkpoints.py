"""The detector base, registry and local checkpoint loading, on the hidden tiny detector."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from detectors import (
    CheckpointCorrupted,
    CheckpointMismatch,
    CheckpointNotFound,
    UnknownDetector,
    UnsafeCheckpoint,
    build_detector,
    create_detector,
    list_detectors,
)
from detectors.tiny import TinyConfig, TinyDetector


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = create_detector("tiny_test", "random")
    model.config.threshold = 0.37
    model.save_pretrained(tmp_path / "ckpt")
    return model.eval(), tmp_path / "ckpt"


def test_hidden_detectors_are_not_listed():
    assert "tiny_test" not in list_detectors()
    assert "tiny_test" in list_detectors(include_hidden=True)


def test_forward_contract():
    model = build_detector("tiny_test").eval()
    out = model(torch.randn(3, 3, 32, 32))
    assert out["logits"].shape == (3, 2)
    assert out["prob_fake"].shape == (3,)
    assert torch.allclose(out["prob_fake"], out["logits"].softmax(-1)[:, 1])
    assert out["features"].shape[0] == 3 and isinstance(out["aux"], dict)


def test_save_load_round_trip_is_bit_exact(saved):
    model, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = create_detector("tiny_test", str(folder))
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x)["logits"], loaded(x)["logits"])
    assert loaded.config == model.config and loaded.config.threshold == 0.37
    assert loaded.source == f"local:{folder}"
    via_class = TinyDetector.from_pretrained(folder)
    assert torch.equal(via_class(x)["logits"], model(x)["logits"])


def test_config_round_trips_through_json(saved):
    model, folder = saved
    data = json.loads((folder / "config.json").read_text())
    assert data["name"] == "tiny_test" and data["detector_family"] == "tiny"
    data = {k: v for k, v in data.items() if k not in ("detector_family", "format_version")}
    assert TinyConfig.from_dict(data) == model.config
    with pytest.raises(ValueError, match="no field"):
        TinyConfig.from_dict({**data, "bogus": 1})


def test_pickle_only_folder_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"name": "tiny_test"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04.")
    with pytest.raises(UnsafeCheckpoint, match="pickle"):
        create_detector("tiny_test", str(tmp_path))


def test_corrupted_weights_name_the_file(saved):
    _, folder = saved
    (folder / "model.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointCorrupted, match=r"model\.safetensors"):
        create_detector("tiny_test", str(folder))


def test_truncated_weights_are_reported(saved):
    _, folder = saved
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointCorrupted):
        create_detector("tiny_test", str(folder))


def test_shape_mismatch_names_tensor_and_shapes(saved):
    _, folder = saved
    cfg = json.loads((folder / "config.json").read_text())
    cfg["width"] = 4
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointMismatch, match=r"body\.0\.weight: file \(8, 3, 3, 3\) vs model \(4, 3, 3, 3\)"):
        create_detector("tiny_test", str(folder))


def test_a_checkpoint_older_than_a_config_field_loads_as_trained(tmp_path):
    # rffr_demo's registry entry now asks for LayerScale and a feature norm; a checkpoint written before
    # those fields existed holds neither, and must load as the plain network it was trained as
    toy = dict(mae_dim=32, mae_depth=1, mae_heads=2, decoder_dim=32, decoder_depth=1, decoder_heads=2,
               vit_dim=32, vit_depth=1, vit_heads=2)
    torch.manual_seed(0)
    old = build_detector("rffr_demo", **toy, vit_layer_scale=0.0, feature_norm=False).eval()
    old.save_pretrained(tmp_path / "old")
    cfg = json.loads((tmp_path / "old" / "config.json").read_text())
    for added_later in ("vit_layer_scale", "feature_norm", "storage_dtype"):
        del cfg[added_later]
    (tmp_path / "old" / "config.json").write_text(json.dumps(cfg))
    loaded = create_detector("rffr_demo", str(tmp_path / "old"))
    assert (loaded.config.vit_layer_scale, loaded.config.feature_norm) == (0.0, False)
    x = torch.randn(1, 3, old.config.input_size, old.config.input_size)
    with torch.no_grad():
        assert torch.equal(loaded(x)["logits"], old(x)["logits"])


def test_invalid_config_json(saved):
    _, folder = saved
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointCorrupted, match=r"config\.json"):
        create_detector("tiny_test", str(folder))


def test_unknown_config_field_is_a_mismatch(saved):
    _, folder = saved
    cfg = json.loads((folder / "config.json").read_text())
    cfg["layers_of_doom"] = 3
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointMismatch, match="layers_of_doom"):
        create_detector("tiny_test", str(folder))


def test_wrong_family_is_refused(saved):
    _, folder = saved
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(name="rffr_demo", detector_family="rffr")
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointMismatch, match="'rffr' detector"):
        create_detector("tiny_test", str(folder))


def test_unknown_detector_and_missing_sources(tmp_path):
    with pytest.raises(UnknownDetector, match="unknown detector 'nope'"):
        create_detector("nope", "random")
    with pytest.raises(CheckpointNotFound, match="no demo checkpoint"):
        create_detector("tiny_test")
    with pytest.raises(CheckpointNotFound, match="not a checkpoint folder"):
        create_detector("tiny_test", str(tmp_path / "absent"))
    with pytest.raises(CheckpointNotFound, match="neither a folder nor a Hub repo"):
        create_detector("tiny_test", "not a repo id!")


def test_predict_gives_a_verdict_with_the_crop(astronaut):
    model = build_detector("tiny_test").eval()
    model.config.threshold = 0.0
    verdict = model.predict(astronaut)
    assert verdict.crop.shape == (64, 64, 3)
    assert 0.0 <= verdict.prob_fake <= 1.0 and verdict.label == "fake"
    assert verdict.summary().startswith("likely manipulated")
    assert verdict.n_faces == 1 and verdict.source == "random"


def test_shipped_files_fit_the_size_budget():
    """Every file under assets/ below 100 MB (a Hub file without LFS, and git hosting's limit) and
    all of assets/ at most 250 MB, so a clone stays small enough for a Space."""
    assets = Path(__file__).resolve().parent.parent / "assets"
    sizes = {p: p.stat().st_size for p in assets.rglob("*") if p.is_file()}
    assert sizes, "assets/ is empty"
    assert max(sizes.values()) < 100 * 1024 * 1024, max(sizes, key=sizes.get)
    assert sum(sizes.values()) <= 250 * 1024 * 1024


def test_every_tracked_asset_is_at_most_20_mb():
    """The repository's rule: no tracked file over 20 MB. Larger checkpoints ship sharded
    (``model.safetensors.index.json`` + shards, :mod:`detectors.weight_files`). Files about to be
    added (untracked, not ignored) count too."""
    root = Path(__file__).resolve().parent.parent
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "assets"],
                                cwd=root, capture_output=True, check=True).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    files = [root / name for name in listed.split("\0") if name]
    sizes = {p.relative_to(root).as_posix(): p.stat().st_size for p in files if p.is_file()}
    assert sizes, "no tracked file under assets/"
    over = {name: size for name, size in sizes.items() if size > 20 * 1024 * 1024}
    assert not over, f"tracked files over 20 MB: {over}"
