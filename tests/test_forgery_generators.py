"""Contracts of the forgery generators (no shared data needed: the skimage astronaut portrait)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from detectors.faces import CropPolicy, align_face, detect_faces, region_mask
from training.data import kinds
from training.data.autoencoder import AutoencoderConfig, FaceAutoencoder
from training.data.forgery import make_forgery, self_donor
from training.data.sentences import parse_sentence, region_sentence, region_vector, regions_of

SIZE = 128


@pytest.fixture(scope="module")
def face(astronaut):
    pts = detect_faces(astronaut)[0].landmarks
    return align_face(astronaut, pts, CropPolicy(size=SIZE))


@pytest.fixture(scope="module")
def donor_face(astronaut):
    # A second face: the astronaut mirrored and recoloured, aligned afresh.
    mirrored = np.ascontiguousarray(astronaut[:, ::-1, ::-1])
    pts = detect_faces(mirrored)[0].landmarks
    a = align_face(mirrored, pts, CropPolicy(size=SIZE))
    return a.image, a.landmarks


@pytest.fixture(scope="module")
def tiny_ae():
    import torch

    torch.manual_seed(0)
    return FaceAutoencoder(AutoencoderConfig(size=64, width=8, latent=4, decoders=("transpose", "pixelshuffle"))).eval()


def _make(kind, face, seed, donor_face=None, tiny_ae=None, **kw):
    opts = {"model": tiny_ae} if kind == "ae" else {}
    donors = [donor_face] if donor_face is not None else None
    return make_forgery(kind, face.image, face.landmarks, np.random.default_rng(seed), donors=donors, **opts, **kw)


@pytest.mark.parametrize("kind", ["sbi", "donor", "region", "ae"])
def test_changes_only_where_the_blend_weight_is_positive(kind, face, donor_face, tiny_ae):
    for seed in range(4):
        f = _make(kind, face, seed, donor_face, tiny_ae)
        assert f.image.shape == face.image.shape and f.image.dtype == np.uint8
        assert f.mask.shape == (SIZE, SIZE) and f.mask.dtype == np.float32
        assert f.mask.min() >= 0 and f.mask.max() <= 1
        assert f.label == 1 and f.meta["kind"] == kind
        diff = np.abs(f.image.astype(int) - face.image.astype(int)).max(-1)
        assert diff.max() > 0, "a forgery must change the face"
        assert (diff[f.weight == 0] == 0).all()
        # Within blur tolerance: visible changes (> 2 levels) need a weight of at least ~1%.
        assert (f.weight[diff > 2] > 0.005).all()
        if kind == "donor":
            np.testing.assert_allclose(f.mask, 4 * f.weight * (1 - f.weight), atol=1e-6)  # Face X-ray's B
        else:
            np.testing.assert_array_equal(f.mask, f.weight)


def test_the_blend_stays_on_the_face(face):
    import cv2

    from training.data.blend import eye_distance

    k = int(0.4 * eye_distance(face.landmarks))  # deformation + dilation + blur reach
    face_area = cv2.dilate(region_mask(face.landmarks, "face", (SIZE, SIZE)), np.ones((2 * k + 1, 2 * k + 1)))
    for seed in range(6):
        f = _make("sbi", face, seed)
        inside = (f.weight * (face_area > 0)).sum() / f.weight.sum()
        assert inside > 0.95


@pytest.mark.parametrize("kind", ["sbi", "donor", "region", "ae"])
def test_seeds_reproduce(kind, face, donor_face, tiny_ae):
    a = _make(kind, face, 7, donor_face, tiny_ae)
    b = _make(kind, face, 7, donor_face, tiny_ae)
    c = _make(kind, face, 8, donor_face, tiny_ae)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert a.meta == b.meta
    assert not np.array_equal(a.image, c.image)


def test_whole_frame_autoencoder_replaces_the_picture(face, tiny_ae):
    blended = [_make("ae", face, seed, tiny_ae=tiny_ae) for seed in range(6)]
    whole = [_make("ae", face, seed, tiny_ae=tiny_ae, whole_frame_p=1.0) for seed in range(6)]
    for f in whole:
        assert f.meta["whole_frame"] and f.label == 1 and f.meta["kind"] == "ae"
        assert (f.mask == 1).all() and (f.weight == 1).all()
        corner = np.abs(f.image[:12, :12].astype(int) - face.image[:12, :12].astype(int))
        assert corner.max() > 0, "the background is synthesised too"
    for f in blended:  # the default leaves the background as it was, and the random stream unchanged
        assert "whole_frame" not in f.meta and (f.weight == 0).any()
    np.testing.assert_array_equal(blended[0].image, _make("ae", face, 0, tiny_ae=tiny_ae, whole_frame_p=0.0).image)


def test_real_is_unchanged(face):
    f = _make("real", face, 0)
    np.testing.assert_array_equal(f.image, face.image)
    assert f.label == 0 and f.mask.max() == 0 and f.meta["sentence"] == "This face is real."


def test_region_labels_match_the_sentence_and_the_mask(face, donor_face):
    for seed in range(12):
        f = _make("region", face, seed, donor_face)
        chosen = f.meta["regions"]
        assert 1 <= len(chosen) <= 3
        assert parse_sentence(f.meta["sentence"]) == set(chosen)
        assert regions_of(region_vector(chosen)) == chosen
        if chosen != ["face"]:
            allowed = np.maximum.reduce([region_mask(face.landmarks, r, (SIZE, SIZE)) for r in chosen])
            near = allowed > 0
            import cv2

            near = cv2.dilate(near.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
            assert (f.weight * near).sum() / f.weight.sum() > 0.95, chosen


def test_region_choice_respects_the_allowed_parts(face):
    allowed = ["left_eye", "mouth"]
    seen = set()
    for seed in range(10):
        f = _make("region", face, seed, regions=allowed)
        assert set(f.meta["regions"]) <= set(allowed)
        seen.update(f.meta["regions"])
    assert seen == set(allowed)


def test_sentences_round_trip_for_every_small_subset():
    parts = kinds.SENTENCE_REGIONS[:-1]
    for k in (1, 2, 3):
        for combo in itertools.combinations(parts, k):
            s = region_sentence(combo)
            assert s.endswith("forged.") and parse_sentence(s) == set(combo), s
    assert region_sentence(["left_eye", "mouth"]) == "The left eye and the mouth of this face are forged."
    assert region_sentence([]) == "This face is real."


def test_without_donors_a_self_derived_donor_is_used_and_named(face):
    f = _make("donor", face, 3)
    assert "self-derived" in f.meta["donor"]
    donor, note = self_donor(face.image, face.landmarks, np.random.default_rng(0))
    assert donor[0].shape == face.image.shape and "mirror" in note


def test_unknown_kind_is_refused(face):
    with pytest.raises(KeyError):
        _make("stylegan", face, 0)


def test_autoencoder_round_trips_through_safetensors(tmp_path, tiny_ae):
    import torch

    tiny_ae.save(tmp_path)
    loaded = FaceAutoencoder.load(tmp_path)
    x = torch.rand(2, 3, 64, 64)
    for dec in tiny_ae.config.decoders:
        y = loaded(x, dec).detach()
        assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
        torch.testing.assert_close(y, tiny_ae(x, dec))
    with pytest.raises(FileNotFoundError):
        FaceAutoencoder.load(tmp_path / "missing")


def test_shipped_autoencoder_loads_and_decodes():
    import torch

    from training.data.autoencoder import DEFAULT_DIR

    if not (DEFAULT_DIR / "model.safetensors").is_file():
        pytest.skip("no shipped autoencoder weights")
    assert (DEFAULT_DIR / "model.safetensors").stat().st_size < 10_000_000
    model = FaceAutoencoder.load(DEFAULT_DIR)
    x = torch.rand(1, 3, model.config.size, model.config.size)
    assert len(model.config.decoders) >= 3
    for dec in model.config.decoders:
        assert model(x, dec).shape == x.shape
