"""The training CLI end to end on CPU: train, stop and resume with identical state, evaluate,
calibrate, export, push to the loopback Hub and load back.

Data come from ``tests/training_standin.py`` (synthetic faces with square forgeries) through the
recipe's ``data.builder``, so these tests need neither the shared data nor the forgery engine.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from training.cli import main

RECIPE = {
    "detector": "tiny_test",
    "model": {"input_size": 32, "width": 4},
    "data": {"builder": "tests.training_standin:build_dataset", "n": 40},
    "train": {"max_steps": 6, "batch_size": 8, "lr": 3e-3, "scheduler": "cosine", "warmup_steps": 1,
              "val_every": 3, "log_every": 1, "seed": 3},
}


def write_recipe(folder: Path, **changes) -> Path:
    recipe = json.loads(json.dumps(RECIPE))
    for section, values in changes.items():
        recipe.setdefault(section, {}).update(values) if isinstance(values, dict) else recipe.__setitem__(section, values)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def stored_faces_folder(tmp: Path) -> Path:
    """An (empty) real/ + fake/ folder: data stored as files, not forgeries made per a recipe."""
    folder = tmp / "faces"
    for label in ("real", "fake"):
        (folder / label).mkdir(parents=True, exist_ok=True)
    return folder


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    found = dict(load_file(str(folder / "model.safetensors")))
    found.update({f"state/{k}": v for k, v in load_file(str(folder / "training_state" / "state.safetensors")).items()})
    return found


def assert_same_state(a: Path, b: Path) -> None:
    ta, tb = tensors(a), tensors(b)
    assert ta.keys() == tb.keys()
    assert any(k.startswith("state/optimizer.state.") for k in ta), "optimizer state must be saved"
    for k in ta:
        assert torch.equal(ta[k], tb[k]), f"{k} differs after resume"
    pa = json.loads((a / "training_state" / "state.json").read_text())
    pb = json.loads((b / "training_state" / "state.json").read_text())
    assert pa["progress"] == pb["progress"]
    assert pa["optimizer"]["param_groups"] == pb["optimizer"]["param_groups"]
    assert pa["scheduler"] == pb["scheduler"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """One uninterrupted run, and the same run stopped after 4 steps and resumed."""
    root = tmp_path_factory.mktemp("train")
    recipe = write_recipe(root)
    full, split = root / "full", root / "split"
    assert main(["train", "--recipe", str(recipe), "--out", str(full), "--no-progress"]) == 0
    assert main(["train", "--recipe", str(recipe), "--out", str(split), "--no-progress", "--stop-after", "4"]) == 0
    stopped = json.loads((split / "last" / "training_state" / "state.json").read_text())["progress"]
    assert main(["train", "--recipe", str(recipe), "--out", str(split), "--no-progress", "--resume"]) == 0
    return {"root": root, "recipe": recipe, "full": full, "split": split, "stopped": stopped}


def test_train_writes_checkpoints_logs_and_curves(trained):
    out = trained["full"]
    for sub in ("best", "last"):
        assert (out / sub / "config.json").is_file() and (out / sub / "model.safetensors").is_file()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["type"] == "train"]
    val = [r for r in records if r["type"] == "val"]
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in val] == [3, 6]
    assert all(r["images_per_s"] > 0 and r["loss"] > 0 for r in train)
    assert train[0]["lr"] < train[1]["lr"] or train[0]["lr"] == pytest.approx(3e-3)  # warm-up then cosine
    assert (out / "loss.png").stat().st_size > 0 and (out / "val_metrics.png").stat().st_size > 0
    config = json.loads((out / "best" / "config.json").read_text())
    assert config["name"] == "tiny_test" and config["width"] == 4
    best_val = max(val, key=lambda r: r["auc"])
    assert config["extra"]["training"]["validation"]["auc"] == pytest.approx(best_val["auc"])
    assert "--recipe" in config["extra"]["training"]["command"]
    # the model changed from its initialisation
    from detectors import create_detector

    fresh = create_detector("tiny_test", "random", input_size=32, width=4)
    trained_model = create_detector("tiny_test", str(out / "last"))
    assert not torch.equal(fresh.head.weight, trained_model.head.weight)


def test_resume_continues_with_identical_state(trained):
    assert trained["stopped"]["step"] == 4 and not trained["stopped"]["finished"]
    assert_same_state(trained["full"] / "last", trained["split"] / "last")
    full_log = (trained["full"] / "metrics.jsonl").read_text().splitlines()
    split_log = (trained["split"] / "metrics.jsonl").read_text().splitlines()
    strip = (lambda lines: [{k: v for k, v in json.loads(x).items() if k != "images_per_s"} for x in lines])
    assert strip(full_log) == strip(split_log)


def test_multi_stage_resume_and_grad_accumulation(tmp_path):
    stages = {"stages": [{"name": "warmup", "data": "real_only"}, {"name": "main"}]}
    recipe = write_recipe(tmp_path, method=stages, train={"max_steps": 2, "grad_accum": 2, "val_every": 0},
                          stages={"warmup": {"lr": 1e-3, "max_steps": 2}, "main": {"lr": 5e-4}})
    full, split = tmp_path / "full", tmp_path / "split"
    assert main(["train", "--recipe", str(recipe), "--out", str(full), "--no-progress"]) == 0
    assert main(["train", "--recipe", str(recipe), "--out", str(split), "--no-progress", "--stop-after", "3"]) == 0
    progress = json.loads((split / "last" / "training_state" / "state.json").read_text())["progress"]
    assert progress["stage_index"] == 1 and progress["step"] == 1  # stopped inside the second stage
    assert main(["train", "--recipe", str(recipe), "--out", str(split), "--no-progress", "--resume"]) == 0
    assert_same_state(full / "last", split / "last")
    assert (full / "stages" / "warmup" / "model.safetensors").is_file()
    warm = load_file(str(full / "stages" / "warmup" / "model.safetensors"))
    init = RECIPE_INIT(width=4)
    assert torch.equal(warm["head.weight"], init["head.weight"])  # the real_only stage trains only the body
    assert not torch.equal(warm["body.0.weight"], init["body.0.weight"])
    records = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in records if r["type"] == "train"] == ["warmup", "warmup", "main", "main"]
    assert not any(r["type"] == "val" and r["stage"] == "warmup" for r in records)
    training = json.loads((full / "last" / "config.json").read_text())["extra"]["training"]
    assert training["stage"] == "main" and training["total_steps"] == 4
    assert training["train"]["lr"] == pytest.approx(5e-4) and training["train"]["max_steps"] == 2  # the stage's own


def RECIPE_INIT(width: int) -> dict[str, torch.Tensor]:
    """The tiny detector's initial weights under the recipes' seed (as ``train`` builds it)."""
    from accelerate.utils import set_seed

    from detectors import build_detector

    set_seed(RECIPE["train"]["seed"])
    return build_detector("tiny_test", input_size=32, width=width).state_dict()


def test_evaluate_json_calibrate_export_push_and_load_back(trained, tmp_path, capsys, monkeypatch):
    from detectors import create_detector
    from training import metrics as M
    from training.engine import build_dataset, predict_dataset

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained["full"] / "best", ckpt)
    capsys.readouterr()
    args = ["evaluate", "--detector", "tiny_test", "--source", str(ckpt), "--recipe", str(trained["recipe"]),
            "--json", "--out", str(tmp_path / "eval"), "--localization", "4"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("auc", "video_auc", "eer", "ap", "acc", "n_real", "n_fake"):
        assert key in result
    assert result["n_real"] + result["n_fake"] == 20
    # the same numbers as the metric functions on the detector's own scores
    model = create_detector("tiny_test", str(ckpt))
    data = build_dataset(RECIPE["data"], model.config, "val", seed=RECIPE["train"]["seed"])
    scored = predict_dataset(model, data, 8)
    assert result["auc"] == pytest.approx(M.auc(scored["scores"], scored["labels"]))
    assert result["video_auc"] == pytest.approx(M.video_auc(scored["scores"], scored["labels"], scored["video_ids"]))
    assert (tmp_path / "eval" / "roc.png").stat().st_size > 0
    maps = result["localization"]["maps"]
    assert "gradcam" in maps and 0.0 <= maps["gradcam"]["pixel_auc"] <= 1.0

    # calibration writes the balanced-accuracy threshold into the checkpoint's config.json
    assert main(args + ["--calibrate"]) == 0
    stored = json.loads((ckpt / "config.json").read_text())
    expected = M.calibrate_threshold(scored["scores"], scored["labels"])
    assert stored["threshold"] == pytest.approx(expected)
    assert stored["extra"]["calibration"]["rule"].startswith("maximum balanced accuracy")
    calibrated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert calibrated["threshold"] == pytest.approx(expected)
    assert create_detector("tiny_test", str(ckpt)).config.threshold == pytest.approx(expected)

    # export: a model card with Hub metadata, then push to the loopback Hub and load it back
    export_dir = tmp_path / "export"
    assert main(["export", "--source", str(ckpt), "--out", str(export_dir), "--metrics", str(tmp_path / "eval"),
                 "--repo-id", "org/tiny-test"]) == 0
    from huggingface_hub import ModelCard

    card = ModelCard.load(export_dir / "README.md")
    assert card.data.library_name == "forgery-lens" and card.data.license == "cc-by-nc-sa-4.0"
    assert "deepfake-detection" in card.data.tags and card.data.eval_results
    assert "python -m training train" in card.text and "Intended use" in card.text

    from tests.hub_server import LoopbackHub

    with LoopbackHub() as hub:
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", hub.url)
        monkeypatch.setattr("huggingface_hub.constants.HUGGINGFACE_CO_URL_TEMPLATE",
                            hub.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "cache"))
        capsys.readouterr()
        assert main(["push", "--source", str(export_dir), "--repo-id", "org/tiny-test", "--json"]) == 0
        pushed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        files = hub.repos["org/tiny-test"].commits[pushed["commit"]]
        assert sorted(files) == ["README.md", "config.json", "model.safetensors"]
        loaded = create_detector("tiny_test", f"org/tiny-test@{pushed['commit']}")
    local = create_detector("tiny_test", str(export_dir))
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(x)["logits"], local(x)["logits"])
    assert loaded.config.threshold == pytest.approx(expected)


def test_evaluate_draws_scores_each_forgery_draw_and_refuses_fixed_folders(trained, tmp_path, capsys):
    from detectors import create_detector
    from training import metrics as M
    from training.engine import build_dataset, predict_dataset

    base = ["evaluate", "--detector", "tiny_test", "--source", str(trained["full"] / "best"),
            "--recipe", str(trained["recipe"]), "--localization", "0"]
    capsys.readouterr()
    assert main(base + ["--json", "--draws", "3"]) == 0
    draws = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["draws"]
    seed = RECIPE["train"]["seed"]
    assert draws["seeds"] == [seed, seed + 1, seed + 2]
    model = create_detector("tiny_test", str(trained["full"] / "best"))
    expected = []
    for s in draws["seeds"]:
        scored = predict_dataset(model, build_dataset(RECIPE["data"], model.config, "val", seed=s), 8)
        expected.append(M.auc(scored["scores"], scored["labels"]))
    assert draws["auc"] == pytest.approx(expected)
    assert len(set(expected)) > 1, "each seed must draw other forgeries"
    assert draws["mean"] == pytest.approx(sum(expected) / 3) and draws["min"] == pytest.approx(min(expected))
    assert main(base + ["--draws", "3"]) == 0
    assert "over 3 forgery draws" in capsys.readouterr().out

    folder = stored_faces_folder(tmp_path)
    assert main(base + ["--data", str(folder), "--draws", "2"]) == 2
    assert "--draws needs forgeries made per the recipe" in capsys.readouterr().err
    assert main(base + ["--draws", "0"]) == 2
    assert "--draws must be at least 1" in capsys.readouterr().err


@pytest.mark.needs_data
def test_evaluate_jpeg_scores_compressed_faces_and_refuses_stored_files(trained, tmp_path, capsys):
    from detectors import create_detector
    from training import metrics as M
    from training.commands.evaluate import uploads_jpeg
    from training.engine import build_dataset, predict_dataset

    pool = {"limit": 80, "kinds": {"real": 1, "sbi": 1}, "augment": False}
    recipe = tmp_path / "pool.yaml"  # the real pool's faces and forgeries, not the stand-in's textures
    recipe.write_text(yaml.safe_dump({**RECIPE, "data": pool}))
    checkpoint = str(trained["full"] / "best")
    base = ["evaluate", "--detector", "tiny_test", "--source", checkpoint, "--recipe", str(recipe),
            "--localization", "0", "--json"]
    capsys.readouterr()
    assert main(base) == 0
    plain = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(base + ["--jpeg", "1"]) == 0
    compressed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    model = create_detector("tiny_test", checkpoint)
    seed = RECIPE["train"]["seed"]
    made = build_dataset({**pool, "augment": uploads_jpeg(1.0)}, model.config, "val", seed=seed)
    as_made = build_dataset(pool, model.config, "val", seed=seed)
    # the same faces and forgeries, each compressed: the pixels change, the labels do not
    for i in range(3):
        assert torch.equal(made[i]["label"], as_made[i]["label"])
        assert not torch.equal(made[i]["image"], as_made[i]["image"])
    scored, scored_as_made = predict_dataset(model, made, 8), predict_dataset(model, as_made, 8)
    assert compressed["auc"] == pytest.approx(M.auc(scored["scores"], scored["labels"]))
    assert plain["auc"] == pytest.approx(M.auc(scored_as_made["scores"], scored_as_made["labels"]))
    assert not torch.allclose(torch.as_tensor(scored["scores"]), torch.as_tensor(scored_as_made["scores"]))
    assert main(base + ["--data", str(stored_faces_folder(tmp_path)), "--jpeg", "0.5"]) == 2
    assert "forgeries made per the recipe" in capsys.readouterr().err
    assert main(base + ["--jpeg", "1.5"]) == 2


def test_evaluate_record_stores_measured_figures_by_kind_that_the_app_reads(trained, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from detectors import create_detector
    from detectors.measured import measured_of

    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained["full"] / "best", ckpt)
    base = ["evaluate", "--detector", "tiny_test", "--source", str(ckpt), "--recipe", str(trained["recipe"]),
            "--localization", "0"]
    assert main(base + ["--draws", "2", "--record", "heldout", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    record = json.loads((ckpt / "config.json").read_text())["extra"]["measured"]["heldout"]
    assert record["auc"] == pytest.approx(metrics["draws"]["mean"], abs=1e-4) and record["draws"] == 2
    assert set(record["kinds"]) == set(metrics["by_kind"]) and record["command"].startswith("python -m training evaluate")
    for kind, figure in record["kinds"].items():
        assert figure["auc"] == pytest.approx(metrics["draws"]["by_kind_mean"][kind], abs=1e-4)
    folder = tmp_path / "faces"  # a real/ + fake/ folder is one kind, named by --label
    for label in ("real", "fake"):
        (folder / label).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.random.default_rng(i + 10 * (label == "fake")).integers(0, 255, (32, 32, 3), np.uint8)
                            ).save(folder / label / f"{i}.png")
    assert main(base + ["--data", str(folder), "--record", "gan", "--label", "GAN faces (made elsewhere)"]) == 0
    measured = measured_of(create_detector("tiny_test", str(ckpt)).config)
    assert measured.sets == ("gan", "heldout")
    gan = [k for k in measured.kinds if k.measured_on == "GAN faces (made elsewhere)"]
    assert [k.short for k in gan] == ["GAN faces"] and 0.0 <= gan[0].auc <= 1.0


def test_recipes_resolve_override_and_validate(tmp_path):
    from training.recipes import CONFIG_DIR, RecipeError, load_recipe, stage_data, stage_settings

    recipe = load_recipe("tiny_test", overrides=["train.lr=2e-3", "data.limit=10", "stages.main.batch_size=4"])
    assert recipe["train"]["lr"] == pytest.approx(2e-3) and recipe["data"]["limit"] == 10
    assert recipe["train"]["grad_accum"] == 1  # defaults filled in
    assert stage_settings(recipe, "main")["batch_size"] == 4 and stage_settings(recipe, "other")["batch_size"] == 8
    assert stage_data(recipe, "x", "real_only")["kinds"] == {"real": 1}
    assert stage_data(recipe, "x", "mixed")["kinds"] == {"real": 1, "sbi": 1}
    bad = write_recipe(tmp_path, train={"learning_rate": 1})
    with pytest.raises(RecipeError, match="learning_rate"):
        load_recipe(str(bad))
    with pytest.raises(RecipeError, match="no full recipe"):
        load_recipe("full", "tiny_test")
    assert main(["train", "--recipe", str(bad), "--out", str(tmp_path / "x")]) == 2
    # every shipped recipe follows the schema
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        assert load_recipe(str(path))["detector"], path


def test_optimizer_state_round_trips_without_pickle():
    from training.engine.state import flatten_optimizer, unflatten_optimizer

    w = torch.nn.Parameter(torch.randn(3, 2))
    opt = torch.optim.AdamW([{"params": [w], "lr": 1e-3}], betas=(0.8, 0.9))
    w.grad = torch.ones_like(w)
    opt.step()
    tensors, meta = flatten_optimizer(opt.state_dict())
    json.dumps(meta)  # everything that is not a tensor is JSON
    back = unflatten_optimizer(tensors, meta)
    ref = opt.state_dict()
    assert back["param_groups"] == ref["param_groups"]
    for key, value in ref["state"][0].items():
        assert torch.equal(back["state"][0][key], value)


@pytest.mark.needs_data
def test_cycle_kinds_batches_hold_equal_counts_of_each_kind():
    from collections import Counter

    from detectors import build_detector
    from training.data.build import build_dataset
    from training.engine.data import make_loader

    cfg = build_detector("tiny_test").config
    data = {"kinds": {"real": 1, "sbi": 1, "donor": 1, "region": 1}, "cycle_kinds": True, "limit": 48,
            "augment": False}
    train_set = build_dataset(data, cfg, "train", seed=0)
    loader, *_ = make_loader(train_set, 8, 0, not getattr(train_set, "ordered", False), 0, True)
    for batch, _ in zip(loader, range(3)):
        assert sorted(Counter(batch["kind"].tolist()).values()) == [2, 2, 2, 2]


def test_init_starts_from_a_checkpoint_and_refuses_another_family(trained, tmp_path, capsys):
    start = trained["full"] / "last"
    out = tmp_path / "from_init"
    recipe = write_recipe(tmp_path, train={"max_steps": 1, "val_every": 0, "lr": 1e-12})
    assert main(["train", "--recipe", str(recipe), "--out", str(out), "--init", str(start), "--no-progress"]) == 0
    before, after = load_file(str(start / "model.safetensors")), load_file(str(out / "last" / "model.safetensors"))
    assert before.keys() == after.keys()
    for key in before:  # one step at lr 1e-12 leaves the starting weights in place
        if key.endswith("num_batches_tracked"):
            assert after[key] == before[key] + 1, key  # batch-norm counted on from the checkpoint
        elif not key.endswith(("running_mean", "running_var")):
            assert torch.allclose(before[key], after[key], atol=1e-6), key
    config = json.loads((out / "last" / "config.json").read_text())
    assert "--init" in config["extra"]["training"]["command"]
    earlier = json.loads((start / "config.json").read_text())["extra"]["training"]
    assert config["extra"]["training_history"] == [{"command": earlier["command"], "total_steps": earlier["total_steps"]}]
    assert main(["export", "--source", str(out / "last"), "--out", str(tmp_path / "card")]) == 0
    card = (tmp_path / "card" / "README.md").read_text()
    assert "started (`--init`) from an earlier checkpoint" in card and earlier["command"] in card
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "config.json").write_text(json.dumps({"name": "lav_demo"}))
    (wrong / "model.safetensors").write_bytes((start / "model.safetensors").read_bytes())
    assert main(["train", "--recipe", str(recipe), "--out", str(tmp_path / "x"), "--init", str(wrong),
                 "--no-progress"]) == 2
    assert "not 'tiny'" in capsys.readouterr().err


def test_channels_last_trains_the_same_model_and_saves_plain_tensors(trained, tmp_path):
    recipe = write_recipe(tmp_path, train={"channels_last": True})
    out = tmp_path / "nhwc"
    assert main(["train", "--recipe", str(recipe), "--out", str(out), "--no-progress"]) == 0
    nhwc = load_file(str(out / "last" / "model.safetensors"))
    plain = load_file(str(trained["full"] / "last" / "model.safetensors"))
    assert nhwc.keys() == plain.keys()
    conv = [k for k, v in nhwc.items() if v.ndim == 4]
    assert conv and all(nhwc[k].is_contiguous() for k in conv)
    losses = [[json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()
               if json.loads(line)["type"] == "train"] for run in (out, trained["full"])]
    assert len(losses[0]) == 6 and losses[0] == pytest.approx(losses[1], rel=1e-4)  # the same six steps
    from detectors import create_detector

    loaded = create_detector("tiny_test", str(out / "last"))  # strict load of the NHWC-trained weights
    assert torch.equal(loaded.body[0].weight, nhwc["body.0.weight"])


def test_export_stores_a_float16_checkpoint_that_loads_into_float32(tmp_path):
    """``storage_dtype: float16``: export halves the file; loading computes in float32 with
    weights equal to the float16 rounding of the trained ones."""
    from detectors import build_detector, create_detector
    from training.export import export

    torch.manual_seed(0)
    model = build_detector("tiny_test", storage_dtype="float16").eval()
    model.save_pretrained(tmp_path / "trained")
    out = export(model, tmp_path / "trained", tmp_path / "exported")
    stored = load_file(str(out / "model.safetensors"))
    trained = load_file(str(tmp_path / "trained" / "model.safetensors"))
    assert all(v.dtype == torch.float16 for k, v in stored.items() if trained[k].is_floating_point())
    assert (out / "model.safetensors").stat().st_size < 0.6 * (tmp_path / "trained" / "model.safetensors").stat().st_size
    loaded = create_detector("tiny_test", str(out))
    for k, v in loaded.state_dict().items():
        assert v.dtype == trained[k].dtype and torch.equal(v, trained[k].half().to(v.dtype)), k
