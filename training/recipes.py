"""Training recipes: one YAML file per detector and size in ``training/configs/``.

A recipe only *overrides*: the detector's config dataclass is the source of truth for the
model, and :data:`TRAIN_DEFAULTS` for the loop. Schema (every section optional except
``detector``)::

    detector: lav_demo            # registry name the recipe trains
    description: "..."            # one line shown in logs and in the model card
    paper: {...}                  # free-form notes: what the paper states, where it is silent
    model: {input_size: 128, ...} # DetectorConfig field overrides (see detectors/<family>.py), and
      init: {backbone: efficientnet_lite0}  # optional: start the tower from a pretrained backbone
                                            # (training/pretrained_init.py; not a config field)
    data:                         # passed as-is to training.data.build.build_dataset
      pool: ../shared/data/ffhq128-real   # or folder: DIR (real/ + fake/), deepfakebench_json: FILE
      kinds: {real: 1, sbi: 1}            # mix of forgery kinds (training/data/kinds.py names)
      cycle_kinds: false
      paired: false                       # training batches hold each face beside one forgery of it
      augment: true
      forgery_options: {ae: {whole_frame_p: 0.5}}  # per-kind generator options (training/data/forgery.py)
      gan_pool: ../shared/data/gan-train  # GAN faces the ``gan`` kind reads (training data only)
      limit: 0                            # 0 = all
      builder: module:function            # optional: a custom dataset factory, same signature
    val_data: {...}               # optional: validation data if not the ``val`` split of ``data``
    train:                        # the loop; see TRAIN_DEFAULTS for every key and its default
      epochs: 10
      max_steps: 0                # optimizer steps per stage; 0 = epochs decide
      batch_size: 32              # per device
      grad_accum: 1               # micro-batches per optimizer step
      optimizer: adam             # adam | adamw | sgd (with momentum, nesterov)
      lr: 2.0e-4
      weight_decay: 0.0
      betas: [0.9, 0.999]
      scheduler: none             # none | cosine (min_lr_ratio) | step (step_size, gamma; in steps)
      warmup_steps: 0             # linear warm-up before the scheduler
      grad_clip: 0.0              # max grad norm; 0 = off
      amp: true                   # mixed precision on CUDA (bf16 if supported, else fp16); never on CPU
      channels_last: false        # NHWC weights: faster CNN training on CPU (ProDet demo 19 -> 23 images/s)
      seed: 0
      val_every: 0                # optimizer steps between validations; 0 = once per epoch
      save_every: 0               # steps between resumable checkpoints; 0 = at each validation
      num_workers: 0
      log_every: 10
      find_unused_parameters: true  # DDP: false is faster when every trainable parameter gets a gradient
    stages:                       # per-stage overrides of ``train`` (and ``data``) by stage name
      mim: {epochs: 2, lr: 1.5e-4, data: {kinds: {real: 1}}}
    method: {...}                 # handed to the detector's TrainingMethod (loss weights, ...)

``--recipe demo|full`` resolves to ``training/configs/<family>_<size>.yaml``; any other value
is a path to a YAML file, or the stem of a file in ``training/configs``.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 1,
    "max_steps": 0,
    "batch_size": 32,
    "eval_batch_size": 0,  # 0 = same as batch_size
    "grad_accum": 1,
    "optimizer": "adam",
    "lr": 1e-4,
    "weight_decay": 0.0,
    "betas": [0.9, 0.999],
    "momentum": 0.9,
    "nesterov": False,
    "scheduler": "none",
    "min_lr_ratio": 0.0,
    "step_size": 1000,
    "gamma": 0.5,
    "warmup_steps": 0,
    "grad_clip": 0.0,
    "amp": True,
    "channels_last": False,
    "seed": 0,
    "deterministic": False,
    "val_every": 0,
    "save_every": 0,
    "num_workers": 0,
    "log_every": 10,
    "drop_last": True,
    "find_unused_parameters": True,  # DDP only: methods whose stages leave some heads unused need it
}

#: Which ``train`` keys name a stage's schedule (the rest apply to the whole run).
SECTION_KEYS = ("detector", "description", "paper", "model", "data", "val_data", "train", "stages", "method")


class RecipeError(ValueError):
    """A recipe that cannot be found or does not follow the schema."""


def repo_relative(path: str) -> str:
    """``path`` relative to the repository when it lies inside it (what cards and configs record),
    else as given."""
    root = Path(__file__).resolve().parent.parent
    try:
        return str(Path(path).resolve().relative_to(root))
    except (ValueError, OSError):
        return path


def family_of(detector: str) -> str:
    from detectors.registry import get_entry

    return get_entry(detector).family


def resolve_recipe_path(spec: str, detector: str | None) -> Path:
    """``demo``/``full`` -> the family's file; a path; or a stem in ``training/configs``."""
    if spec in ("demo", "full"):
        if not detector:
            raise RecipeError(f"--recipe {spec} needs --detector to know the family")
        family = family_of(detector)
        candidates = [CONFIG_DIR / f"{family}_{spec}.yaml"]
        if detector.endswith(f"_{spec}") or spec == "demo":
            candidates.append(CONFIG_DIR / f"{detector}.yaml")
        for path in candidates:
            if path.is_file():
                return path
        raise RecipeError(f"no {spec} recipe for {detector!r}: expected {candidates[0]}")
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    stem = CONFIG_DIR / f"{spec}.yaml"
    if stem.is_file():
        return stem
    raise RecipeError(f"recipe {spec!r} is neither demo/full, a YAML file, nor a name in {CONFIG_DIR}")


def load_recipe(spec: str, detector: str | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read, validate and complete a recipe; ``overrides`` are ``dotted.key=yaml_value`` strings."""
    path = resolve_recipe_path(spec, detector)
    try:
        recipe = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(recipe, dict):
        raise RecipeError(f"{path}: a recipe is a mapping")
    for item in overrides or []:
        apply_override(recipe, item)
    if detector:
        recipe["detector"] = detector
    return complete(recipe, source=str(path))


def complete(recipe: dict[str, Any], source: str = "<dict>") -> dict[str, Any]:
    """Fill defaults and check the schema (unknown sections and train keys are errors)."""
    recipe = copy.deepcopy(recipe)
    unknown = sorted(set(recipe) - set(SECTION_KEYS) - {"source"})
    if unknown:
        raise RecipeError(f"{source}: unknown recipe section(s) {', '.join(unknown)}; known: {', '.join(SECTION_KEYS)}")
    if not recipe.get("detector"):
        raise RecipeError(f"{source}: no 'detector' (give --detector or set it in the recipe)")
    for section in ("model", "data", "train", "stages", "method"):
        recipe[section] = dict(recipe.get(section) or {})
    _check_train_keys(recipe["train"], f"{source}: train")
    for name, stage in recipe["stages"].items():
        stage = dict(stage or {})
        _check_train_keys({k: v for k, v in stage.items() if k not in ("data", "val_data")}, f"{source}: stages.{name}")
        recipe["stages"][name] = stage
    recipe["train"] = _typed({**TRAIN_DEFAULTS, **recipe["train"]})
    for name, stage in recipe["stages"].items():
        recipe["stages"][name] = {**stage, **_typed({k: v for k, v in stage.items() if k in TRAIN_DEFAULTS})}
    recipe["source"] = source
    return recipe


def _number(value: Any) -> Any:
    """PyYAML reads ``1e-4`` (no dot) as a string; make such strings numbers."""
    if isinstance(value, str):
        try:
            return float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            return value
    return value


def _typed(train: dict[str, Any]) -> dict[str, Any]:
    """Numeric ``train`` values given as strings (``lr: 1e-4``) become numbers."""
    out = dict(train)
    for key, value in train.items():
        default = TRAIN_DEFAULTS.get(key)
        if isinstance(value, str) and isinstance(default, (int, float)) and not isinstance(default, bool):
            number = _number(value)
            if isinstance(number, (int, float)):
                out[key] = float(number) if isinstance(default, float) else number
    return out


def _check_train_keys(section: dict[str, Any], where: str) -> None:
    unknown = sorted(set(section) - set(TRAIN_DEFAULTS))
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(TRAIN_DEFAULTS)}")


def apply_override(recipe: dict[str, Any], item: str) -> None:
    """Set ``a.b.c=value`` in place (value parsed as YAML: ``3``, ``1e-4``, ``[1, 2]``, ``true``)."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise RecipeError(f"override {item!r} is not KEY=VALUE")
    value = _number(yaml.safe_load(raw)) if raw.strip() else ""
    node = recipe
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def stage_settings(recipe: dict[str, Any], stage_name: str) -> dict[str, Any]:
    """The ``train`` settings of one stage (its overrides over the recipe's ``train``)."""
    stage = recipe.get("stages", {}).get(stage_name, {})
    return {**recipe["train"], **{k: v for k, v in stage.items() if k not in ("data", "val_data")}}


def stage_data(recipe: dict[str, Any], stage_name: str, stage_kind: str, validation: bool = False) -> dict[str, Any]:
    """The data section of one stage: ``real_only`` stages see only reals (kinds ``{real: 1}``)."""
    stage = recipe.get("stages", {}).get(stage_name, {})
    base = dict(recipe.get("data", {}))
    base.update(stage.get("data", {}) or {})
    if validation:
        val = recipe.get("val_data") or stage.get("val_data")
        if val:
            return dict(val)
    if stage_kind == "real_only" and not validation:
        base["kinds"] = {"real": 1}
    return base
