"""Augmentation: the same for both classes; a flip flips masks and swaps left/right labels."""
from __future__ import annotations

import numpy as np

from detectors.config import DetectorConfig
from training.data import kinds
from training.data.augment import AugmentConfig, augment
from training.data.items import make_item
from training.data.sentences import flip_vector, parse_sentence, region_vector, regions_of


def _image(size=64):
    yy, xx = np.mgrid[0:size, 0:size]
    return np.stack([xx * 4 % 256, yy * 4 % 256, (xx + yy) % 256], -1).astype(np.uint8)


def test_flip_vector_swaps_left_and_right_only():
    v = region_vector(["left_eye", "right_brow", "nose", "left_cheek"])
    assert regions_of(flip_vector(v)) == ["right_eye", "left_brow", "nose", "right_cheek"]
    np.testing.assert_array_equal(flip_vector(flip_vector(v)), v)


def test_flip_flips_image_mask_and_regions_together():
    img = _image()
    mask = np.zeros((64, 64), np.float32)
    mask[10:20, 5:15] = 1.0
    regions = region_vector(["left_eye", "mouth"])
    cfg = AugmentConfig(flip=1.0, color=0, blur=0, resize=0, jpeg=0)
    out, m, r, flipped = augment(img, mask, regions, np.random.default_rng(0), cfg)
    assert flipped
    np.testing.assert_array_equal(out, img[:, ::-1])
    np.testing.assert_array_equal(m, mask[:, ::-1])
    assert regions_of(r) == ["right_eye", "mouth"]


def test_item_sentence_follows_a_flip():
    cfg = DetectorConfig(input_size=32, crop_size=64)
    img = _image()
    mask = np.zeros((64, 64), np.float32)
    regions = region_vector(["left_eye"])
    aug = AugmentConfig(flip=1.0, color=0, blur=0, resize=0, jpeg=0)
    item = make_item(img, mask, 1, kinds.REGION, regions, "v", cfg, rng=np.random.default_rng(0), aug=aug)
    assert parse_sentence(item["sentence"]) == {"right_eye"}
    assert regions_of(item["regions"].numpy()) == ["right_eye"]
    plain = make_item(img, mask, 1, kinds.REGION, regions, "v", cfg)
    assert parse_sentence(plain["sentence"]) == {"left_eye"}


def test_same_draws_for_real_and_fake():
    """Augmentation depends on the rng only, not on the label: equal seeds, equal changes."""
    img = _image()
    zeros = np.zeros((64, 64), np.float32)
    cfg = AugmentConfig(jpeg=1.0, resize=1.0, color=1.0, blur=1.0)
    a = augment(img, zeros, region_vector([]), np.random.default_rng(3), cfg)[0]
    b = augment(img, zeros + 0.5, region_vector(["face"]), np.random.default_rng(3), cfg)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, img)


def test_augment_config_from_recipe():
    assert AugmentConfig.from_cfg(False) is None
    assert AugmentConfig.from_cfg(None) == AugmentConfig()
    cfg = AugmentConfig.from_cfg({"jpeg_quality": [70, 80], "flip": 0})
    assert cfg.jpeg_quality == (70, 80) and cfg.flip == 0
