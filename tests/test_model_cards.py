"""Model cards and configs regenerate from each checkpoint's ``config.json``.

Every shipped checkpoint's README.md and config.json must be exactly what
``python -m training card`` writes from its config.json (what CI checks, through this file); the
commands that write into a checkpoint folder (export, evaluate --record, calibrate-maps) record
themselves there and re-render the card, so card and config never disagree.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

from training.cli import REPO_ROOT, SHARED, command_line, main, portable_path
from training.export import (
    dataset_type,
    default_repo_id,
    detector_from_folder,
    export,
    folder_texts,
    portable_description,
    refresh_folder,
)

CHECKPOINTS = REPO_ROOT / "assets" / "checkpoints"
FAMILIES = ["lav", "rffr", "antifake_prompt", "prodet", "vlffd"]
#: an absolute path (``/abc/def``) not inside a relative one (``../shared/data``), a URL or a Hub id
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/[A-Za-z_][\w.-]*/[\w.-]+")


@pytest.mark.parametrize("family", FAMILIES)
def test_shipped_card_and_config_regenerate_unchanged(family):
    folder = CHECKPOINTS / family
    for name, text in folder_texts(folder).items():
        assert (folder / name).read_text(encoding="utf-8") == text, (
            f"{folder / name} is not what `python -m training card {folder.relative_to(REPO_ROOT)}` writes")


@pytest.mark.parametrize("family", FAMILIES)
def test_shipped_card_lists_each_data_set_once_under_its_own_type(family):
    folder = CHECKPOINTS / family
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    evaluation = config["extra"]["evaluation"]
    card = ModelCard((folder / "README.md").read_text(encoding="utf-8"))
    results = card.data.to_dict()["model-index"][0]["results"]
    assert [r["dataset"]["name"] for r in results] == [e["data"] for e in evaluation]
    types = [r["dataset"]["type"] for r in results]
    assert len(set(types)) == len(types) and "custom" not in types
    assert card.data.to_dict()["model-index"][0]["name"] == default_repo_id(config["name"])
    assert f'create_detector("{config["name"]}", "{default_repo_id(config["name"])}")' in card.text
    made_by = config["extra"]["made_by"]
    assert made_by["commands"] and all(c.startswith("python -m training") for c in made_by["commands"])
    for text in ((folder / "README.md").read_text(encoding="utf-8"), (folder / "config.json").read_text(encoding="utf-8")):
        assert not ABSOLUTE_PATH.findall(text)


def test_dataset_type_names_the_data_set():
    assert dataset_type("pool ../shared/data/ffhq128-real (val)") == "ffhq128-real-own-forgeries"
    assert dataset_type("folder ../shared/data/dev-gan (all)") == "dev-gan"
    assert dataset_type("folder ../shared/data/dev-gan") == "dev-gan"
    assert dataset_type("deepfakebench_json /data/dfb/Celeb-DF-v2.json (test)") == "celeb-df-v2"
    assert dataset_type("builder tests.training_standin:build_dataset (val)") == "builder-tests-training-standin-build-dataset"
    assert dataset_type("recipe data (val)") == "recipe-data"


def test_one_repo_id_rule_for_cards_push_and_the_space():
    assert default_repo_id("lav_demo") == "forgery-lens/lav-demo"
    assert default_repo_id("antifake_prompt_demo") == "forgery-lens/antifake-prompt-demo"
    front = (REPO_ROOT / "README.md").read_text(encoding="utf-8").split("\n---\n", 1)[0]
    models = yaml.safe_load(front.lstrip("-\n"))["models"]
    assert models == [default_repo_id(f"{family}_demo") for family in FAMILIES]


def test_recorded_paths_are_repo_or_shared_relative():
    assert portable_path(str(REPO_ROOT / "runs" / "x" / "best")) == "runs/x/best"
    assert portable_path(str(SHARED / "data" / "dev-gan")) == "../shared/data/dev-gan"
    assert portable_path("org/repo@main") == "org/repo@main" and portable_path("demo") == "demo"
    assert portable_path("/elsewhere/folder") == "/elsewhere/folder"  # nothing to be relative to
    assert portable_description(f"folder {SHARED / 'data' / 'dev-gan'} (all)") == "folder ../shared/data/dev-gan (all)"
    assert command_line(["evaluate", "--source", str(REPO_ROOT / "assets" / "checkpoints" / "lav"),
                         f"--data={SHARED / 'data' / 'dev-gan'}", "--label", "StyleGAN2 faces"]) == (
        "python -m training evaluate --source assets/checkpoints/lav --data=../shared/data/dev-gan "
        "--label 'StyleGAN2 faces'")


def _card_only_copy(family: str, dst: Path) -> Path:
    """config.json + README.md of a shipped checkpoint (a card needs no weights)."""
    dst.mkdir()
    for name in ("config.json", "README.md"):
        shutil.copyfile(CHECKPOINTS / family / name, dst / name)
    return dst


def test_card_check_fails_on_a_tampered_copy_and_card_repairs_it(tmp_path, capsys):
    lav, prodet = _card_only_copy("lav", tmp_path / "lav"), _card_only_copy("prodet", tmp_path / "prodet")
    assert main(["card", str(lav), str(prodet), "--check"]) == 0
    readme = lav / "README.md"
    shown = f"| {json.loads((lav / 'config.json').read_text(encoding='utf-8'))['extra']['evaluation'][0]['auc']:.4f} |"
    assert shown in readme.read_text(encoding="utf-8") and shown != "| 0.8400 |"
    readme.write_text(readme.read_text(encoding="utf-8").replace(shown, "| 0.8400 |"), encoding="utf-8")
    config = json.loads((prodet / "config.json").read_text(encoding="utf-8"))
    config["extra"]["evaluation"][1]["auc"] = 0.95  # a figure changed in the config but not on the card
    (prodet / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")  # and not as saved
    before = {p: p.read_bytes() for p in (readme, prodet / "config.json", prodet / "README.md")}
    capsys.readouterr()
    assert main(["card", str(lav), str(prodet), "--check"]) == 1
    out = capsys.readouterr().out
    for path in before:
        assert f"would change: {path}" in out
    assert "-| pool ../shared/data/ffhq128-real (val) | 0.8400" in out
    assert all(p.read_bytes() == b for p, b in before.items())  # --check writes nothing
    assert main(["card", str(lav), str(prodet)]) == 0
    assert main(["card", str(lav), str(prodet), "--check"]) == 0
    assert readme.read_text(encoding="utf-8") == (CHECKPOINTS / "lav" / "README.md").read_text(encoding="utf-8")
    assert "| folder ../shared/data/dev-gan (all) | 0.9500 |" in (prodet / "README.md").read_text(encoding="utf-8")


def test_card_refuses_a_folder_without_config(tmp_path, capsys):
    assert main(["card", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err


RECIPE = {
    "detector": "tiny_test",
    "model": {"input_size": 32, "width": 4},
    "data": {"builder": "tests.training_standin:build_dataset", "n": 24},
    "train": {"seed": 3},
}


def test_export_then_record_then_map_scales_keep_card_and_config_in_step(tmp_path):
    from detectors import build_detector
    from training.commands.calibrate_maps import write_map_scales

    build_detector("tiny_test", input_size=32, width=4).save_pretrained(tmp_path / "trained")
    evaluated = tmp_path / "eval"
    evaluated.mkdir()
    (evaluated / "metrics.json").write_text(json.dumps({
        "data": f"pool {SHARED / 'data' / 'ffhq128-real'}", "split": "val", "auc": 0.81234, "video_auc": None,
        "eer": 0.25, "ap": 0.9, "acc": 0.75, "n_real": 10, "n_fake": 14, "threshold": 0.5,
        "localization": {"maps": {"gradcam": {"pixel_auc": 0.6, "iou": 0.4, "n": 4}}}}))
    out = tmp_path / "exported"
    assert main(["export", "--source", str(tmp_path / "trained"), "--out", str(out), "--metrics", str(evaluated)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["extra"]["evaluation"] == [{
        "data": "pool ../shared/data/ffhq128-real (val)", "auc": 0.81234, "video_auc": None, "eer": 0.25, "ap": 0.9,
        "acc": 0.75, "n_real": 10, "n_fake": 14, "maps": [{"map": "gradcam", "pixel_auc": 0.6, "iou": 0.4}]}]
    assert config["extra"]["made_by"]["commands"] == [
        f"python -m training export --source {tmp_path / 'trained'} --out {out} --metrics {evaluated}"]
    assert "card" not in config["extra"]  # default repo id and licence: nothing to record
    card = (out / "README.md").read_text()
    assert "| pool ../shared/data/ffhq128-real (val) | 0.8123 | n/a | 0.2500 |" in card
    assert "map `gradcam`: pixel AUC 0.6000, best IoU 0.4000." in card
    assert "type: ffhq128-real-own-forgeries" in card and "forgery-lens/tiny-test" in card
    assert main(["card", str(out), "--check"]) == 0

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(RECIPE))
    record = ["evaluate", "--detector", "tiny_test", "--source", str(out), "--recipe", str(recipe),
              "--record", "heldout", "--localization", "0"]
    assert main(record) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["extra"]["measured"]["heldout"]["command"] == command_line(record)
    assert config["extra"]["made_by"]["commands"][-1] == command_line(record)
    assert command_line(record) in (out / "README.md").read_text()
    assert main(["card", str(out), "--check"]) == 0

    write_map_scales(out, {"gradcam": {"lo": 0.1, "hi": 0.9}})  # what calibrate-maps stores, then:
    refresh_folder(out, "python -m training calibrate-maps --detector tiny_test --source exported")
    assert main(["card", str(out), "--check"]) == 0
    commands = json.loads((out / "config.json").read_text())["extra"]["made_by"]["commands"]
    assert len(commands) == 3 and commands[-1].startswith("python -m training calibrate-maps")
    assert detector_from_folder(out).config.extra["map_scales"]["gradcam"]["hi"] == 0.9


def test_export_keeps_a_chosen_repo_id_and_starts_provenance_with_training(tmp_path):
    from detectors import build_detector

    model = build_detector("tiny_test", input_size=32, width=4)
    model.config.extra["training"] = {"command": "python -m training train --detector tiny_test --out runs/t"}
    model.save_pretrained(tmp_path / "trained")
    export(model, tmp_path / "trained", tmp_path / "out", repo_id="someone/tiny", command="python -m training export x")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["extra"]["card"] == {"repo_id": "someone/tiny"}
    assert config["extra"]["made_by"]["commands"] == ["python -m training train --detector tiny_test --out runs/t",
                                                      "python -m training export x"]
    card = (tmp_path / "out" / "README.md").read_text()
    assert 'create_detector("tiny_test", "someone/tiny")' in card
    assert "## How this folder was made\n\nThe commands that made this folder, in order:" in card
    assert folder_texts(tmp_path / "out")["README.md"] == card


def test_record_command_starts_with_the_training_runs_and_skips_a_repeat():
    from training.export import record_command

    extra = {"training_history": [{"command": "python -m training train A", "total_steps": 5}],
             "training": {"command": "python -m training train B --init A"}}
    extra = record_command(extra, "python -m training evaluate --calibrate --record x")
    extra = record_command(extra, "python -m training evaluate --calibrate --record x")  # the same run, twice
    assert extra["made_by"] == {"commands": ["python -m training train A", "python -m training train B --init A",
                                             "python -m training evaluate --calibrate --record x"]}
    assert record_command({"made_by": {"note": "n", "commands": []}}, "c")["made_by"] == {"note": "n", "commands": ["c"]}
