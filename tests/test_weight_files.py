"""Checkpoint weights in one file or sharded the Hub's way (detectors/weight_files.py): round trips,
stale files of the other layout, every malformed index refused with a typed error."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from detectors import CheckpointCorrupted, CheckpointMismatch, CheckpointNotFound, UnsafeCheckpoint, create_detector
from detectors.factory import load_checkpoint
from detectors.file_format import MAX_SHARD_BYTES, WEIGHTS_FILE, WEIGHTS_INDEX_FILE
from detectors.weight_files import has_weights, read_state, weight_file_names, weights_size, write_state

INDEX = WEIGHTS_INDEX_FILE


def small_state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"a.weight": torch.randn(8, 8, generator=g),  # 256 bytes each
            "a.bias": torch.randn(8, generator=g),
            "b.weight": torch.randn(8, 8, generator=g).half(),
            "b.count": torch.tensor(7, dtype=torch.int64),
            "c.weight": torch.randn(4, 16, generator=g),
            "d.empty": torch.zeros(0)}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(a[k], b[k]), k


def sharded(folder: Path, state: dict[str, torch.Tensor] | None = None) -> Path:
    """``state`` written as several shards (a 300-byte limit)."""
    written = write_state(state or small_state(), folder, max_shard_bytes=300)
    assert written[-1] == INDEX and len(written) >= 4
    return folder


def test_the_limit_keeps_every_shipped_file_under_20_mb():
    assert MAX_SHARD_BYTES + 2**20 <= 20 * 2**20  # a MiB of room for a shard's JSON header


def test_one_file_when_it_fits(tmp_path):
    state = small_state()
    assert write_state(state, tmp_path) == [WEIGHTS_FILE]
    assert sorted(p.name for p in tmp_path.iterdir()) == [WEIGHTS_FILE]
    assert has_weights(tmp_path) and weight_file_names(tmp_path) == [WEIGHTS_FILE]
    assert weights_size(tmp_path) == (tmp_path / WEIGHTS_FILE).stat().st_size
    assert_same(read_state(tmp_path), state)
    with safe_open(str(tmp_path / WEIGHTS_FILE), "pt") as f:
        assert f.metadata() == {"format": "pt"}


def test_shards_and_index_past_the_limit(tmp_path):
    state = small_state()
    written = write_state(state, tmp_path, max_shard_bytes=300)
    shards = written[:-1]
    assert written[-1] == INDEX and shards == [f"model-{i:05d}-of-{len(shards):05d}.safetensors"
                                               for i in range(1, len(shards) + 1)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(written)
    index = json.loads((tmp_path / INDEX).read_text())
    assert set(index["weight_map"]) == set(state) and set(index["weight_map"].values()) == set(shards)
    assert index["metadata"]["format"] == "pt"
    assert index["metadata"]["total_size"] == sum(v.numel() * v.element_size() for v in state.values())
    for name in shards:  # each shard's tensors within the limit (none here is larger than it alone)
        with safe_open(str(tmp_path / name), "pt") as f:
            keys = list(f.keys())
            assert sum(f.get_tensor(k).nbytes for k in keys) <= 300
            assert set(keys) == {k for k, v in index["weight_map"].items() if v == name}
    assert weight_file_names(tmp_path) == shards
    assert weight_file_names(tmp_path, with_index=True) == [INDEX, *shards]
    assert weights_size(tmp_path) == sum((tmp_path / n).stat().st_size for n in written)
    assert_same(read_state(tmp_path), state)


def test_a_tensor_larger_than_the_limit_gets_a_shard_of_its_own(tmp_path):
    state = {"small": torch.ones(4), "big": torch.ones(1000), "tail": torch.ones(4)}
    written = write_state(state, tmp_path, max_shard_bytes=100)
    weight_map = json.loads((tmp_path / INDEX).read_text())["weight_map"]
    assert len(written) == 3 and [k for k, v in weight_map.items() if v == weight_map["big"]] == ["big"]
    assert_same(read_state(tmp_path), state)


def test_no_tensor_is_dropped_when_tensors_share_memory(tmp_path):
    base = torch.arange(64, dtype=torch.float32)
    state = {"full": base, "same": base, "view": base[8:16], "reshaped": base.view(8, 8)}
    for limit in (MAX_SHARD_BYTES, 200):
        folder = tmp_path / str(limit)
        write_state(state, folder, max_shard_bytes=limit)
        back = read_state(folder)
        assert back.keys() == state.keys()
        for k, v in state.items():
            assert torch.equal(back[k], v), k
    with pytest.raises(TypeError, match="not a tensor"):
        write_state({"x": [1, 2]}, tmp_path / "bad")  # type: ignore[dict-item]


def test_writing_shards_removes_the_single_file_and_nothing_else(tmp_path):
    keep = {"README.md": b"card", "config.json": b"{}", "tokenizer.json": b"{}", "other.safetensors": b"x",
            "model.safetensors.bak": b"x"}
    for name, data in keep.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "training_state").mkdir()
    (tmp_path / "training_state" / "model-00001-of-00002.safetensors").write_bytes(b"x")
    write_state(small_state(), tmp_path)
    written = write_state(small_state(), tmp_path, max_shard_bytes=300)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*keep, "training_state", *written])
    assert all((tmp_path / name).read_bytes() == data for name, data in keep.items())
    assert (tmp_path / "training_state" / "model-00001-of-00002.safetensors").is_file()
    assert_same(read_state(tmp_path), small_state())


def test_writing_one_file_removes_the_index_and_its_shards(tmp_path):
    sharded(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    assert write_state(small_state(), tmp_path) == [WEIGHTS_FILE]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", WEIGHTS_FILE]
    assert_same(read_state(tmp_path), small_state())


def test_a_shorter_split_removes_the_shards_of_the_longer_one(tmp_path):
    many = write_state(small_state(), tmp_path, max_shard_bytes=100)
    few = write_state(small_state(), tmp_path, max_shard_bytes=600)
    assert len(many) > len(few) > 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(few)
    assert_same(read_state(tmp_path), small_state())


def test_a_folder_without_weights(tmp_path):
    assert not has_weights(tmp_path)
    with pytest.raises(CheckpointNotFound, match=re.escape(f"{tmp_path}: no model.safetensors")):
        read_state(tmp_path)


# ---- malformed indexes: typed errors that name the folder and the fault -----------------------------
def _edit_index(folder: Path, change) -> None:
    index = json.loads((folder / INDEX).read_text())
    change(index)
    (folder / INDEX).write_text(json.dumps(index))


def _first_shard(folder: Path) -> str:
    return json.loads((folder / INDEX).read_text())["weight_map"]["a.weight"]


@pytest.mark.parametrize("text, match", [
    ("{not json", "not valid JSON"),
    ("[]", "no 'weight_map'"),
    ('{"metadata": {}}', "no 'weight_map'"),
    ('{"weight_map": ["a.weight"]}', "no 'weight_map'"),
    ('{"weight_map": {"a.weight": 3}}', "no 'weight_map'"),
    ('{"weight_map": {}}', "names no tensors"),
    ('{"metadata": [], "weight_map": {"a.weight": "model-00001-of-00002.safetensors"}}', "'metadata'"),
    ('{"weight_map": {"a.weight": "model-00001-of-00002.safetensors", '
     '"a.weight": "model-00002-of-00002.safetensors"}}', "names 'a.weight' twice"),
])
def test_an_index_that_is_not_an_index_is_corrupted(tmp_path, text, match):
    sharded(tmp_path)
    (tmp_path / INDEX).write_text(text)
    with pytest.raises(CheckpointCorrupted, match=match) as caught:
        read_state(tmp_path)
    assert str(tmp_path) in str(caught.value)


@pytest.mark.parametrize("name, match", [
    ("../model-00001-of-00002.safetensors", "not a plain file name"),
    ("sub/model-00001-of-00002.safetensors", "not a plain file name"),
    ("..\\model.safetensors", "not a plain file name"),
    ("/etc/model.safetensors", "not a plain file name"),
    ("C:model.safetensors", "not a plain file name"),
    ("pytorch_model.bin", "not a .safetensors file"),
    ("model-00001-of-00002.safetensors.pt", "not a .safetensors file"),
    (".safetensors", "not a .safetensors file"),
])
def test_an_index_naming_files_outside_the_folder_or_pickles_is_unsafe(tmp_path, name, match):
    sharded(tmp_path / "ckpt")
    save_file(small_state(), str(tmp_path / "model-00001-of-00002.safetensors"))  # bait beside the folder
    _edit_index(tmp_path / "ckpt", lambda index: index["weight_map"].__setitem__("a.weight", name))
    with pytest.raises(UnsafeCheckpoint, match=match) as caught:
        read_state(tmp_path / "ckpt")
    assert str(tmp_path / "ckpt") in str(caught.value)


def test_a_missing_shard_is_not_found(tmp_path):
    sharded(tmp_path)
    gone = _first_shard(tmp_path)
    (tmp_path / gone).unlink()
    with pytest.raises(CheckpointNotFound, match=rf"{re.escape(str(tmp_path))}: 1 shard.* missing: {re.escape(gone)}"):
        read_state(tmp_path)


def test_shards_must_hold_exactly_what_the_index_assigns_them(tmp_path):
    sharded(tmp_path)
    first = _first_shard(tmp_path)
    with safe_open(str(tmp_path / first), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in list(f.keys())}
    # a tensor the index assigns elsewhere (so stored twice)
    other = next(k for k, v in json.loads((tmp_path / INDEX).read_text())["weight_map"].items() if v != first)
    save_file({**tensors, other: small_state()[other]}, str(tmp_path / first))
    with pytest.raises(CheckpointCorrupted, match=rf"shard {re.escape(first)} does not match.*assigns elsewhere.*{re.escape(other)}"):
        read_state(tmp_path)
    # a tensor the index assigns to it, absent
    save_file({k: v for k, v in tensors.items() if k != "a.weight"}, str(tmp_path / first))
    with pytest.raises(CheckpointCorrupted, match=r"lacks 1 tensor.*a\.weight"):
        read_state(tmp_path)
    # a tensor the index does not know
    _edit_index(tmp_path, lambda index: index["weight_map"].pop("a.weight"))
    save_file(tensors, str(tmp_path / first))
    with pytest.raises(CheckpointCorrupted, match=r"not at all, e\.g\. a\.weight"):
        read_state(tmp_path)


def test_an_unreadable_shard_is_corrupted_and_named(tmp_path):
    sharded(tmp_path)
    first = _first_shard(tmp_path)
    (tmp_path / first).write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointCorrupted, match=re.escape(f"{first}: unreadable safetensors file")):
        read_state(tmp_path)


# ---- detectors saved and loaded sharded ----------------------------------------------------------------
@pytest.fixture()
def tiny_sharded(tmp_path):
    torch.manual_seed(0)
    model = create_detector("tiny_test", "random").eval()
    folder = tmp_path / "ckpt"
    model.save_pretrained(folder)
    assert weight_file_names(folder) == [WEIGHTS_FILE]  # a tiny model fits one file
    write_state(read_state(folder), folder, max_shard_bytes=2048)
    assert len(weight_file_names(folder)) > 1 and not (folder / WEIGHTS_FILE).exists()
    return model, folder


def test_a_detector_saved_sharded_loads_back_equal(tiny_sharded):
    model, folder = tiny_sharded
    loaded = load_checkpoint(str(folder))
    assert loaded.source == f"local:{folder}" and loaded.config == model.config
    expected = model.state_dict()
    assert loaded.state_dict().keys() == expected.keys()
    assert all(torch.equal(v, expected[k]) for k, v in loaded.state_dict().items())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x)["logits"], model(x)["logits"])
    # saved again from the loaded model: one file again, the shards gone
    loaded.save_pretrained(folder)
    assert weight_file_names(folder) == [WEIGHTS_FILE] and not (folder / INDEX).exists()
    assert not list(folder.glob("model-*-of-*.safetensors"))


def test_save_pretrained_shards_past_the_limit(tmp_path, monkeypatch):
    from functools import partial

    torch.manual_seed(0)
    model = create_detector("tiny_test", "random").eval()
    monkeypatch.setattr("detectors.base.write_state", partial(write_state, max_shard_bytes=1024))  # 16 MiB, scaled
    model.save_pretrained(tmp_path)
    assert len(weight_file_names(tmp_path)) > 1
    loaded = load_checkpoint(str(tmp_path))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())


def test_sharded_checkpoint_errors_reach_the_loader(tiny_sharded):
    _, folder = tiny_sharded
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "width": 4}))
    with pytest.raises(CheckpointMismatch, match=rf"{re.escape(INDEX)} does not fit tiny_test.*body\.0\.weight"):
        load_checkpoint(str(folder))
    (folder / "config.json").write_text(json.dumps(config))
    shard = weight_file_names(folder)[0]
    (folder / shard).unlink()
    with pytest.raises(CheckpointNotFound, match=shard):
        create_detector("tiny_test", str(folder))
    for name in weight_file_names(folder, with_index=True)[1:]:
        (folder / name).unlink(missing_ok=True)
    (folder / INDEX).unlink()
    with pytest.raises(CheckpointNotFound, match=r"no model\.safetensors"):
        create_detector("tiny_test", str(folder))
