"""Data sets: DeepfakeBench JSON and folder readers (fixtures), synthetic pool (shared data)."""
from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from detectors.config import DetectorConfig
from training.data import kinds
from training.data.build import build_dataset
from training.data.readers import deepfakebench_records, folder_records

FIXTURE = Path(__file__).parent / "fixtures" / "deepfakebench"
CFG = DetectorConfig(input_size=32, crop_size=64, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
LABEL_MAP = {"TinyFF-real": 0, "TinyFF-DF": 1}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Keep fixture landmarks out of the user's cache (pool tests switch back to the real one)."""
    monkeypatch.setenv("FORGERY_LENS_CACHE", str(tmp_path / "cache"))


def check_item(item: dict, size: int) -> None:
    assert set(item) == {"image", "label", "kind", "mask", "regions", "sentence", "video_id"}
    assert item["image"].shape == (3, size, size) and item["image"].dtype == torch.float32
    assert item["label"].dtype == torch.long and item["label"].ndim == 0
    assert item["kind"].dtype == torch.long and int(item["kind"]) in kinds.KIND_NAMES
    assert item["mask"].shape == (1, size, size) and item["mask"].dtype == torch.float32
    assert 0 <= float(item["mask"].min()) and float(item["mask"].max()) <= 1
    assert item["regions"].shape == (len(kinds.SENTENCE_REGIONS),) and item["regions"].dtype == torch.float32
    assert isinstance(item["sentence"], str) and isinstance(item["video_id"], str)
    assert (int(item["label"]) == 0) == (int(item["kind"]) == kinds.REAL)
    if int(item["label"]) == 0:
        assert item["sentence"] == "This face is real." and float(item["regions"].sum()) == 0
        assert float(item["mask"].max()) == 0


def test_deepfakebench_json_parses():
    test = deepfakebench_records(FIXTURE / "dataset.json", "TinyFF", "test", LABEL_MAP)
    assert len(test) == 4
    assert Counter(r.label for r in test) == {0: 2, 1: 2}
    assert {r.video_id for r in test} == {"TinyFF-real/001", "TinyFF-DF/001_000"}
    assert all(r.path.is_file() for r in test)
    fakes = [r for r in test if r.label == 1]
    assert all(r.mask is not None and r.mask.is_file() for r in fakes)
    assert len(deepfakebench_records(FIXTURE / "dataset.json", None, "all", LABEL_MAP)) == 8
    # No val split in the JSON: val falls back to test; frames_per_video subsamples.
    assert len(deepfakebench_records(FIXTURE / "dataset.json", "TinyFF", "val", LABEL_MAP)) == 4
    assert len(deepfakebench_records(FIXTURE / "dataset.json", "TinyFF", "all", LABEL_MAP, frames_per_video=1)) == 4
    with pytest.raises(KeyError):
        deepfakebench_records(FIXTURE / "dataset.json", "Celeb-DF", "test")


def test_deepfakebench_dataset_items_and_no_face_fallback():
    ds = build_dataset({"deepfakebench_json": str(FIXTURE / "dataset.json"), "dataset": "TinyFF",
                        "label_map": LABEL_MAP}, CFG, "all")
    assert len(ds) == 8 and ds.no_face_count == 8  # synthetic frames hold no face: centre crops
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=8)))
    assert batch["image"].shape == (8, 3, 32, 32)
    for i in range(len(ds)):
        check_item(ds[i], 32)
    fake = next(ds[i] for i in range(len(ds)) if int(ds[i]["label"]) == 1)
    assert float(fake["mask"].max()) > 0.5 and int(fake["kind"]) == kinds.DEEPFAKE


def test_folder_layout(tmp_path):
    src = FIXTURE / "frames"
    (tmp_path / "real").mkdir()
    shutil.copy(src / "TinyFF-real/000/000.png", tmp_path / "real" / "a.png")
    shutil.copytree(src / "TinyFF-DF/000_001", tmp_path / "fake" / "vid1")
    shutil.copytree(FIXTURE / "masks/TinyFF-DF/000_001", tmp_path / "masks" / "vid1")
    recs = folder_records(tmp_path)
    assert sorted((r.video_id, r.label, r.mask is not None) for r in recs) == [
        ("a", 0, False), ("vid1", 1, True), ("vid1", 1, True)]
    ds = build_dataset({"folder": str(tmp_path)}, CFG, "all")
    assert len(ds) == 3 and ds.no_face_count == 3
    for i in range(3):
        check_item(ds[i], 32)


@pytest.mark.needs_data
def test_synthetic_pool_items(monkeypatch):
    monkeypatch.delenv("FORGERY_LENS_CACHE", raising=False)  # reuse the pool's landmark cache
    data = {"limit": 60, "kinds": {"real": 1, "sbi": 1, "donor": 1, "region": 1}, "cycle_kinds": True}
    train = build_dataset(data, CFG, "train", seed=1)
    val = build_dataset(data, CFG, "val", seed=1)
    assert len(train) + len(val) == 60 and len(val) > 0
    assert not {f.name for f in train.files} & {f.name for f in val.files}
    batch = next(iter(torch.utils.data.DataLoader(train, batch_size=8)))
    assert batch["kind"].tolist() == [0, 1, 2, 4, 0, 1, 2, 4]  # equal counts per cycle
    for i in range(4):
        check_item(train[i], 32)
    # Val is fixed per (seed, index); train changes with the epoch but reproduces for a seed.
    again = build_dataset(data, CFG, "val", seed=1)
    assert torch.equal(val[2]["image"], again[2]["image"]) and val[2]["sentence"] == again[2]["sentence"]
    first = train[1]["image"]
    train.set_epoch(1)
    assert not torch.equal(first, train[1]["image"])
    train.set_epoch(0)
    assert torch.equal(first, train[1]["image"])


@pytest.mark.needs_data
def test_paired_training_items_put_each_face_beside_its_forgery(monkeypatch):
    monkeypatch.delenv("FORGERY_LENS_CACHE", raising=False)
    data = {"limit": 40, "kinds": {"real": 0.5, "sbi": 0.25, "donor": 0.25}, "paired": True, "augment": False}
    train = build_dataset(data, CFG, "train", seed=3)
    val = build_dataset(data, CFG, "val", seed=3)
    assert train.ordered and len(train) == 2 * len(train.files)
    assert not val.paired and len(val) == len(val.files)  # validation keeps one item per face
    labels, fakes = [], Counter()
    for k in range(len(train) // 2):
        real, fake = train[2 * k], train[2 * k + 1]
        assert real["video_id"] == fake["video_id"]  # the same face
        labels += [int(real["label"]), int(fake["label"])]
        fakes[int(fake["kind"])] += 1
    assert labels == [0, 1] * (len(train) // 2)
    assert set(fakes) == {kinds.KIND_CODES["sbi"], kinds.KIND_CODES["donor"]}
    first = [train[2 * k]["video_id"] for k in range(len(train) // 2)]
    train.set_epoch(1)  # a new epoch pairs the faces in a new order
    second = [train[2 * k]["video_id"] for k in range(len(train) // 2)]
    assert sorted(first) == sorted(second) and first != second
    with pytest.raises(ValueError, match="forgery kind"):
        build_dataset({"limit": 40, "kinds": {"real": 1}, "paired": True}, CFG, "train")


@pytest.mark.needs_data
def test_synthetic_mix_ratio(monkeypatch):
    monkeypatch.delenv("FORGERY_LENS_CACHE", raising=False)
    ds = build_dataset({"limit": 40, "kinds": {"real": 0.5, "region": 0.5}, "regions": ["nose", "mouth"]},
                       CFG, "all")
    counts = Counter(ds.kind_of(i) for i in range(len(ds)))
    assert set(counts) == {"real", "region"} and min(counts.values()) > 8
    for i in range(len(ds)):
        if ds.kind_of(i) == "region":
            item = ds[i]
            got = {kinds.SENTENCE_REGIONS[j] for j in np.flatnonzero(item["regions"].numpy())}
            assert got and got <= {"nose", "mouth"}
            break


def test_forgery_options_are_checked_before_any_work():
    from training.data.synthetic import check_forgery_options

    assert check_forgery_options({"ae": {"whole_frame_p": 0.5}}) == {"ae": {"whole_frame_p": 0.5}}
    assert check_forgery_options(None) == {}
    with pytest.raises(ValueError, match="unknown kind 'gan'"):
        check_forgery_options({"gan": {}})
    with pytest.raises(ValueError, match=r"forgery_options.ae: unknown option\(s\) \['whole_fram'\]"):
        check_forgery_options({"ae": {"whole_fram": 0.5}})


@pytest.mark.needs_data
def test_forgery_options_reach_the_generator(monkeypatch):
    monkeypatch.delenv("FORGERY_LENS_CACHE", raising=False)
    data = {"limit": 12, "kinds": {"ae": 1}, "forgery_options": {"ae": {"whole_frame_p": 1.0}}}
    ds = build_dataset(data, CFG, "all")
    f, _ = ds.forgery(0)
    assert f.meta["whole_frame"] and (f.mask == 1).all()
    assert (ds[1]["mask"] == 1).all()


def test_landmark_cache_keys_by_content_and_remembers_misses(tmp_path, monkeypatch):
    from training.data import landmark_cache as lc

    calls = []

    def fake_detect(image):
        calls.append(image.shape)
        return None if image[0, 0, 0] == 0 else np.ones((478, 2), np.float32)

    monkeypatch.setattr(lc, "detect_landmarks", fake_detect)
    from PIL import Image

    a, b, c = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "copy_of_a.png"
    Image.fromarray(np.full((8, 8, 3), 9, np.uint8)).save(a)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(b)
    shutil.copy(a, c)
    cache = lc.LandmarkCache(tmp_path / "cache")
    first = cache.get_many([a, b, c])
    assert first[0].shape == (478, 2) and first[1] is None and first[2].shape == (478, 2)
    assert len(calls) == 2  # the copy has the same content hash: found in the cache
    again = lc.LandmarkCache(tmp_path / "cache").get_many([a, b, c])
    assert len(calls) == 2 and again[1] is None  # misses are remembered too
