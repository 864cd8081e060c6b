"""The app's UI-free pipeline: loading with fallbacks, runs, the combined verdict, lab scores."""
from __future__ import annotations

import numpy as np
import pytest

import pipeline
from detectors import create_detector
from detectors.measured import measured_of
from detectors.registry import BUILTIN_FAMILIES
from pipeline import Analyzer, Choice, DetectorSlot, ModelCache, combine, running
from pipeline import slots as slots_module
from training import lab
from training.lab import score_map


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer(include_test=True, families=["tiny"])


@pytest.fixture(scope="module")
def prepared(astronaut):
    return pipeline.prepare(astronaut)


def test_slots_name_every_known_family_even_when_missing(monkeypatch):
    slots = pipeline.detector_slots(include_test=True)
    assert [s.family for s in slots][:5] == list(BUILTIN_FAMILIES)
    assert slots[-1].family == "tiny" and slots[-1].default_source == "random"
    assert {s.family: s.concurrency_group for s in slots}["antifake_prompt"] == "vlm"
    ghost = pipeline.detector_slots(families=["no_such_family"])
    assert ghost == []
    monkeypatch.setattr(slots_module, "in_build", lambda family: family != "vlffd")  # a build without VLFFD
    shipped = {s.family: s for s in pipeline.detector_slots()}
    assert list(shipped) == list(BUILTIN_FAMILIES)
    assert shipped["vlffd"].name is None and shipped["vlffd"].title == "vlffd"
    assert shipped["lav"].name == "lav_demo"


def test_slots_take_each_familys_facts_from_its_class():
    from detectors.antifake_prompt import AntifakePromptDetector
    from detectors.lav import LocateAndVerify

    slots = {s.family: s for s in pipeline.detector_slots()}
    assert (slots["lav"].title, slots["lav"].paper) == (LocateAndVerify.display_name, LocateAndVerify.paper)
    assert slots["antifake_prompt"].serial is AntifakePromptDetector.serial is True
    assert [f for f, s in slots.items() if s.concurrency_group == "vlm"] == ["antifake_prompt"]


def test_models_load_once_per_source(analyzer):
    slot = analyzer.by_family["tiny"]
    assert analyzer.cache.get(slot) is analyzer.cache.get(slot, "") is analyzer.cache.get(slot, " random ")


def test_a_family_without_a_module_is_missing_not_an_error():
    cache = ModelCache()
    loaded = cache.get(DetectorSlot("imaginary", None, "demo", "Imaginary detector"))
    assert loaded.model is None and "not part of this build" in loaded.message


@pytest.mark.parametrize("problem", ["corrupted", "wrong type", "missing folder", "offline hub"])
def test_a_failing_source_falls_back_to_the_default_with_a_message(tmp_path, problem, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read at import time, so patch the constant
    slot = DetectorSlot("tiny", "tiny_test", "random", "Tiny")
    folder = tmp_path / "ckpt"
    if problem == "corrupted":
        create_detector("tiny_test", "random").save_pretrained(folder)
        (folder / "model.safetensors").write_bytes(b"\x00" * 64)
        expect = "CheckpointCorrupted"
    elif problem == "wrong type":
        folder.mkdir()
        (folder / "config.json").write_text('{"name": "no_such_detector"}')
        (folder / "model.safetensors").write_bytes(b"")
        expect = "no_such_detector"
    elif problem == "missing folder":
        folder = tmp_path / "nothing-here"
        expect = "not a checkpoint folder"
    else:
        folder = "nobody/nothing@main"
        expect = "CheckpointNotFound"
    cache = ModelCache()
    loaded = cache.get(slot, str(folder))
    assert loaded.model is cache.get(slot).model is not None
    assert loaded.message.startswith(f"Could not load '{folder}'") and expect in loaded.message
    assert "Showing the random checkpoint instead" in loaded.message


def test_a_good_local_checkpoint_is_used(tmp_path):
    model = create_detector("tiny_test", "random")
    model.save_pretrained(tmp_path / "mine")
    loaded = ModelCache().get(DetectorSlot("tiny", "tiny_test", "random", "Tiny"), str(tmp_path / "mine"))
    assert loaded.message == "" and loaded.source.startswith("local:")


def test_run_gives_verdict_and_explanations(analyzer, prepared):
    result = analyzer.run_one("tiny", prepared)
    assert result.ok and result.verdict.face_index == 0 and result.verdict.n_faces == 1
    assert result.explanations and result.aligned.image.shape[:2] == (64, 64)
    item = result.to_json({0: 7})
    assert item["explanations"][0]["image"] == 7 and item["label"] in ("fake", "real")
    off = analyzer.run_one("tiny", prepared, choice=Choice(run=False))
    assert off.status == "off" and off.verdict is None


def test_the_pipeline_and_predict_share_one_inference_path(analyzer, prepared, monkeypatch):
    """Both crop, decide and build the Verdict through ``Detector.decide_face``, so they agree exactly."""
    from detectors import Detector

    model = analyzer.loaded("tiny").model
    seen: list[int] = []
    original = Detector.decide_face

    def spy(self, rgb, face, face_index=0, n_faces=1):
        seen.append(face_index)
        return original(self, rgb, face, face_index, n_faces)

    monkeypatch.setattr(Detector, "decide_face", spy)
    for with_explanations in (True, False):
        result = analyzer.run_one("tiny", prepared, with_explanations=with_explanations)
        direct = model.predict(prepared.rgb, faces=prepared.faces)
        assert result.verdict.prob_fake == direct.prob_fake and result.verdict.threshold == direct.threshold
        assert np.array_equal(result.verdict.crop, direct.crop) and result.aligned.image is result.verdict.crop
        assert bool(result.explanations) is with_explanations
    assert seen == [0, 0, 0, 0]


def test_no_family_shadows_the_inference_path():
    """RFFR and ProDet have a ``decide`` of their own (a forward step); the shared path must not collide."""
    from detectors import Detector, get_family, list_families

    families = list_families(include_hidden=True)
    assert set(BUILTIN_FAMILIES) <= set(families)
    for family in families:
        assert get_family(family).model_class.decide_face is Detector.decide_face, family


def test_no_detector_part_hides_a_method_of_the_base():
    """A submodule named like a base method (LAV's ``score`` heads against ``score``) wins the
    attribute lookup of neither: the method is found first and the model breaks."""
    from detectors import Detector, build_detector, list_detectors

    methods = {n for n in dir(Detector) if not n.startswith("_") and callable(getattr(Detector, n, None))}
    for name in list_detectors(include_hidden=True):
        if name.endswith("_full"):
            continue
        model = build_detector(name)
        parts = set(model._modules) | set(model._parameters) | set(model._buffers)
        assert not parts & methods, (name, sorted(parts & methods))


def test_a_failing_detector_becomes_an_error_card(analyzer, prepared, monkeypatch):
    loaded = analyzer.loaded("tiny")
    monkeypatch.setattr(running, "explanations_for", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    result = pipeline.run_detector(loaded, prepared)
    assert result.status == "error" and "boom" in result.message


def _item(label: str, prob: float, kinds: dict[str, float] | None = None) -> dict:
    """A detector's JSON result; ``kinds`` = its measured AUC by kind of fake."""
    item = {"status": "ok", "label": label, "prob_fake": prob, "title": f"detector {label} {prob}"}
    if kinds is not None:
        config = {"extra": {"measured": {"set": {"label": "a set", "kinds": {
            k: {"label": k, "auc": auc, "caught": None} for k, auc in kinds.items()}}}}}
        item["measured"] = pipeline.measured_json(measured_of(config))
    return item


def test_votes_are_weighed_by_measured_skill():
    strong, weak = {"ae": 1.0, "gan": 0.9}, {"ae": 0.55, "gan": 0.45}
    c = combine([_item("fake", 0.9, strong), _item("real", 0.2, weak), _item("real", 0.3, weak), {"status": "missing"}])
    assert (c.n, c.n_fake, c.n_real) == (3, 1, 2)
    assert c.label == "fake" and c.lean == pytest.approx((0.9 - 2 * 0.05) / (0.9 + 2 * 0.05))  # one skilled vote outweighs two
    assert "1 of 3 detectors say likely manipulated, 2 say likely real" in c.summary() and "lean manipulated" in c.summary()
    confident = combine([_item("fake", 0.9, strong)] * 2)
    assert confident.headline() == "leans manipulated" and confident.skill == pytest.approx(0.9)


def test_agreeing_detectors_that_are_near_guessing_are_never_called_confident():
    blind = {"ae": 0.95, "gan": 0.41}
    c = combine([_item("real", 0.1, blind)] * 5)
    assert c.label == "real" and "unanimous" not in c.summary() and c.headline() == "leans real, with low confidence"
    assert c.blind_spots == (("gan", 0.41),) and "None of them reliably detects gan (best AUC 0.41)" in c.summary()
    split = combine([_item("fake", 0.9, blind), _item("real", 0.1, blind)])
    assert split.label == "inconclusive" and "do not lean clearly" in split.summary()
    unmeasured = combine([_item("fake", 0.9), _item("fake", 0.8)])
    assert unmeasured.lean is None and unmeasured.label == "inconclusive" and "cannot be weighed" in unmeasured.summary()
    assert combine([]).label == "none"


def test_measured_figures_read_as_one_sentence_and_a_skill():
    config = {"extra": {"measured": {
        "heldout": {"label": "own", "real_called_real": 0.8, "kinds": {
            "ae": {"label": "autoencoder deepfakes (whole face)", "auc": 1.0, "caught": 0.97},
            "donor": {"label": "donor blends (parts)", "auc": 0.72, "caught": 0.4}}},
        "stylegan2": {"label": "StyleGAN2 faces", "real_called_real": 0.5, "kinds": {
            "all": {"label": "StyleGAN2 faces (generated)", "auc": 0.41, "caught": 0.3}}}}}}
    m = measured_of(config)
    assert m.real_called_real == 0.5 and m.skill == pytest.approx((1.0 + 0.44 + 0.0) / 3)
    assert m.sentence() == ("It catches autoencoder deepfakes (1.00); is weak on donor blends (0.72); is worse than "
                            "guessing on StyleGAN2 faces (0.41) (AUC: 0.5 = guessing, 1 = perfect).")
    assert measured_of({}).sentence().startswith("No measured accuracy")


def test_score_map_against_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    mask = np.zeros((40, 40), np.float32)
    mask[10:25, 5:30] = 1
    heat = np.round(rng.random((40, 40)) + 0.5 * mask, 1)  # ties on purpose
    scores = score_map(heat, mask)
    assert scores["pixel_auc"] == pytest.approx(roc_auc_score(mask.ravel() > 0.5, heat.ravel()))
    assert score_map(mask, mask) == {"pixel_auc": 1.0, "iou": 1.0, "iou_threshold": 1.0,
                                     "forged_share": pytest.approx(mask.mean())}
    assert score_map(1 - mask, mask)["pixel_auc"] == 0.0
    assert score_map(heat, np.zeros_like(mask))["pixel_auc"] is None
    small = score_map(mask[::2, ::2], mask)  # maps at another size are resized to the mask
    assert small["pixel_auc"] > 0.95


def test_mask_follows_each_detectors_crop(analyzer, prepared):
    result = analyzer.run_one("tiny", prepared)
    full = np.zeros(prepared.rgb.shape[:2], np.float32)
    x0, y0, x1, y1 = (int(v) for v in prepared.faces[0].bbox)
    full[y0:y1, x0:x1] = 1
    truth, maps = lab.lab_maps(result, full)
    assert truth.shape == result.aligned.image.shape[:2] and 0.2 < truth.mean() < 0.9
    assert maps and maps[0].heatmap.shape == truth.shape and maps[0].scores["pixel_auc"] is not None


def test_patch_probe_finds_the_clicked_patch():
    emb = np.zeros((2, 4, 4), np.float32)
    emb[0] = 1.0
    emb[:, 1, 2] = (0.0, 1.0)  # one patch unlike the rest
    probe = pipeline.PatchProbe(emb, target=1, crop_size=(64, 64), clickable=[True, False])
    assert probe.patch_at(40, 20) == (1, 2) and probe.patch_at(1000, -5) == (0, 3)
    row = probe.similarity((1, 2))
    assert row[1, 2] == pytest.approx(1.0) and row[0, 0] == pytest.approx(0.0)


def test_jsonable_keeps_numbers_and_summarises_big_arrays():
    import torch

    out = pipeline.jsonable({"p": np.float32(0.25), "v": np.arange(3), "big": np.zeros((32, 32)), "t": torch.ones(2),
                             "nan": float("nan"), "pair": (1, 2)})
    assert out == {"p": 0.25, "v": [0, 1, 2], "big": {"shape": [32, 32], "dtype": "float64"}, "t": [1.0, 1.0],
                   "nan": None, "pair": [1, 2]}


def test_lab_forgery_changes_only_the_chosen_parts(astronaut, prepared):
    from detectors.faces import region_mask
    from training import lab

    face = prepared.faces[0]
    made = lab.make_lab_forgery(astronaut, face, "self-blend", ["mouth"], seed=2)
    changed = np.any(made.image != astronaut, axis=-1)
    assert changed.any() and not np.any(changed & (made.truth == 0)), "pixels outside the truth stay equal"
    mouth = region_mask(face.landmarks, "mouth", astronaut.shape[:2])
    eye = region_mask(face.landmarks, "left_eye", astronaut.shape[:2])
    assert (made.truth * mouth).sum() > 0.5 * mouth.sum() and (made.truth * eye).sum() == 0
    again = lab.make_lab_forgery(astronaut, face, "self-blend", ["mouth"], seed=2)
    assert np.array_equal(made.image, again.image), "same seed, same forgery"
    whole = lab.make_lab_forgery(astronaut, face, "donor blend", [], seed=1)
    assert whole.regions == ["face"] and whole.truth.max() == pytest.approx(1.0)
    with pytest.raises(lab.LabError):
        lab.make_lab_forgery(astronaut, face, "photoshop", [])
