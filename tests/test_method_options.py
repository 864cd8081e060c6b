"""Training methods' recipe options: typed, validated, and every committed recipe's options load."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from training.methods import MethodOptionsError, TrainingMethod, get_method
from training.recipes import CONFIG_DIR, family_of, load_recipe

ROOT = Path(__file__).resolve().parent.parent


def committed_recipes() -> list[str]:
    """The recipes in git (a recipe being written beside them is not yet the project's)."""
    try:
        out = subprocess.run(["git", "ls-files", "training/configs/*.yaml"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        out = [str(p.relative_to(ROOT)) for p in CONFIG_DIR.glob("*.yaml")]
    return sorted(out)


@pytest.mark.parametrize("path", committed_recipes(), ids=lambda p: Path(p).stem)
def test_every_committed_recipe_has_valid_method_options(path):
    recipe = load_recipe(str(ROOT / path))
    method = get_method(family_of(recipe["detector"]), recipe)
    given = recipe.get("method") or {}
    assert set(given) <= {f for f in vars(method.options)}
    for key, value in given.items():  # each option reaches the method as written (typed)
        got = getattr(method.options, key)
        assert got == value or list(got) == list(value), key


@pytest.mark.parametrize("family,option", [("lav", "seg_weigth"), ("prodet", "anchor_batchs"),
                                           ("vlffd", "itc_wieght"), ("rffr", "init_vit_from_mim"),
                                           ("antifake_prompt", "init_wrd"), ("tiny", "stage")])
def test_a_misspelt_option_names_itself_and_the_allowed_ones(family, option):
    with pytest.raises(MethodOptionsError, match=rf"{family}: method has unknown option\(s\) '{option}'; allowed: "):
        get_method(family, {"method": {option: 1}})


def test_options_are_typed_and_checked():
    lav = get_method("lav", {"method": {"seg_weight": 2, "prior_box": [0.1, 0.9]}})
    assert lav.options.seg_weight == 2.0 and isinstance(lav.options.seg_weight, float)
    assert lav.options.prior_box == (0.1, 0.9) and lav.options.sim_weight == 0.1  # the rest keep defaults
    with pytest.raises(MethodOptionsError, match=r"lav: method.mixup_prob must be float, got 'half'"):
        get_method("lav", {"method": {"mixup_prob": "half"}})
    with pytest.raises(MethodOptionsError, match=r"prodet: method.bridging must be bool, got 1"):
        get_method("prodet", {"method": {"bridging": 1}})
    with pytest.raises(MethodOptionsError, match=r"weights has unknown part\(s\) \['blnd'\]"):
        get_method("prodet", {"method": {"weights": {"blnd": 2.0}}})
    with pytest.raises(MethodOptionsError, match=r"prior_box must be two numbers"):
        get_method("lav", {"method": {"prior_box": [0.1]}})
    with pytest.raises(MethodOptionsError, match="must be a mapping"):
        get_method("lav", {"method": [1, 2]})
    prodet = get_method("prodet", {"method": {"weights": {"blend": 2}}})
    assert prodet.weights == {"blend": 2.0, "identity": 1.0, "deepfake": 1.0, "final": 1.0, "transition": 1.0}


def test_the_engine_calls_the_after_training_hook_once_on_the_final_checkpoint(tmp_path, monkeypatch):
    from tests.test_training_cli import write_recipe
    from training.cli import main
    from training.methods.tiny import TinyMethod

    seen: list[Path] = []

    def after(self: TrainingMethod, checkpoint: Path) -> dict:
        seen.append(checkpoint)
        assert (checkpoint / "model.safetensors").is_file()
        return {"probe": 1}

    monkeypatch.setattr(TinyMethod, "after_training", after)
    recipe = write_recipe(tmp_path, train={"max_steps": 2, "val_every": 0})
    assert main(["train", "--recipe", str(recipe), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert seen == [tmp_path / "run" / "best"]
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r for r in records if r["type"] == "after_training"] == [{"type": "after_training", "probe": 1}]


def test_prodets_hook_fits_the_anchors_of_the_final_checkpoint_as_the_command_does(tmp_path, monkeypatch):
    from training.methods import prodet

    calls = []
    monkeypatch.setattr(prodet, "fit_checkpoint", lambda *args, **kw: calls.append((args, kw)) or {"0": 5})
    recipe = {"train": {"seed": 7}, "method": {"anchor_batches": 3, "anchor_batch_size": 4}}
    method = get_method("prodet", recipe)
    assert method.after_training(tmp_path) == {"anchors": {"0": 5}}
    assert calls == [((tmp_path, method.recipe, 3, 4), {"seed": 7})]
    parser_defaults = (prodet.ProDetOptions.anchor_batches, prodet.ProDetOptions.anchor_batch_size)
    calls.clear()
    assert prodet.main(["fit-anchors", str(tmp_path)]) == 0  # the command still works, with the hook's defaults
    assert calls == [((str(tmp_path), "demo", *parser_defaults), {})]


def test_prodets_hook_keeps_the_tracked_anchors_when_the_data_lacks_an_anchor_kind(tmp_path, monkeypatch):
    from training.methods import prodet

    def missing(*args, **kw):
        raise prodet.AnchorKindsMissing("fit_anchors saw no samples of donor")

    monkeypatch.setattr(prodet, "fit_checkpoint", missing)
    assert get_method("prodet", {}).after_training(tmp_path) == {"anchors_not_fitted": "fit_anchors saw no samples of donor"}
    assert get_method("prodet", {"method": {"anchor_batches": 0}}).after_training(tmp_path) is None
