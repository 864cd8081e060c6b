"""Model cards (README.md with Hub metadata) for trained detectors, and the export of a
checkpoint folder ready for ``push``.

A card is rendered from the checkpoint's ``config.json`` alone, so ``python -m training card``
can regenerate it (and ``--check`` that it is current): the training facts (data, command,
steps, validation AUC) come from ``extra["training"]``, which ``train`` writes; the evaluation
table from ``extra["evaluation"]``, which ``export`` fills from the ``evaluate --out DIR``
folders given as ``--metrics``; and the "How this folder was made" section from
``extra["made_by"]`` (``note``, ``commands``, optional ``after``), to which every command that
writes into a checkpoint folder (``export``, ``evaluate --calibrate``/``--record``,
``calibrate-maps``) appends its own command line before it re-renders the card.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from detectors.base import CONFIG_FILE
from detectors.file_format import FORMAT_VERSION, MAX_SHARD_BYTES
from detectors.weight_files import read_state, weight_file_names, write_state

from .cli import portable_path
from .recipes import repo_relative

LICENSE = "cc-by-nc-sa-4.0"
README_FILE = "README.md"
#: the Hub organisation of the project's checkpoints (see :func:`default_repo_id`)
HUB_ORG = "forgery-lens"
#: the keys of an ``evaluate`` metrics.json that the card shows (kept in ``extra["evaluation"]``)
EVALUATION_KEYS = ("auc", "video_auc", "eer", "ap", "acc", "n_real", "n_fake")
#: the "How this folder was made" intro when ``extra["made_by"]`` has no ``note``
MADE_BY_NOTE = "The commands that made this folder, in order:"
BASE_TAGS = ["forgery-lens", "deepfake-detection", "face-forgery-detection", "pytorch", "safetensors"]
METRIC_NAMES = {"auc": ("roc_auc", "frame-level AUC"), "video_auc": ("roc_auc", "video-level AUC"),
                "eer": ("eer", "equal error rate"), "ap": ("average_precision", "average precision"),
                "acc": ("accuracy", "accuracy at the stored threshold")}

INTENDED_USE = """\
Research and teaching: showing, side by side with the other Forgery Lens detectors, how this
paper's method decides whether a face photo was manipulated, and *why* (its explanation maps).
It is not a forensic tool: do not use its output to accuse anyone, to moderate content
automatically, or as evidence."""

LIMITATIONS = """\
- Trained on a small set of FFHQ portraits (128 px, aligned, mostly frontal, adult faces from
  Flickr) and on forgeries the project synthesises from them (self-blends, donor blends,
  autoencoder re-renderings, region forgeries). Real-world deepfakes, GAN/diffusion faces,
  heavy compression, unusual poses, lighting, ages and skin tones can fool it in both
  directions; FFHQ's demographic skew carries over.
- A demo-sized model: CPU-friendly and far smaller than the paper's; its numbers are not the
  paper's numbers.
- The decision threshold was calibrated on a validation split of the project's own data (see
  `config.json`); scores are not calibrated probabilities."""


KIND_TEXT = {"sbi": "self-blended images (SBI)", "donor": "donor blends (Face X-ray style)",
             "ae": "autoencoder deepfakes", "region": "region forgeries described by sentences"}


def uses_gan_faces(data: dict[str, Any]) -> bool:
    """Whether a recipe's data section mixes in GAN faces read from ``gan_pool`` (the ``gan`` kind)."""
    if not data.get("gan_pool"):
        return False
    mixes = [data.get("kinds") or {}, data.get("deepfake_anchor") or {}]
    return any(float(m.get("gan") or 0) > 0 for m in mixes)


def fake_kinds(data: dict[str, Any]) -> str:
    """The forgery kinds a recipe's data section mixes in, in words."""
    kinds = [k for k, w in (data.get("kinds") or {}).items() if k not in ("real", "gan") and w]
    if data.get("folder") or data.get("deepfakebench_json"):
        return "fakes read from " + str(data.get("folder") or data.get("deepfakebench_json"))
    if not kinds:
        return ", ".join(KIND_TEXT.values())
    return ", ".join(KIND_TEXT.get(k, k) for k in kinds)


def _fmt(value: Any) -> str:
    return "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))


def default_repo_id(name: str) -> str:
    """The Hub repo of registry entry ``name`` (``lav_demo`` -> ``forgery-lens/lav-demo``): the one
    rule for the cards' usage lines, ``export``/``push`` without ``--repo-id`` and the Space's
    ``models:`` list."""
    return f"{HUB_ORG}/{name.replace('_', '-')}"


def portable_description(text: str) -> str:
    """A data description (``folder /abs/repo/../shared/data/dev-gan (all)``) with its path made
    repo-relative or ``../shared/...``-relative, as cards and configs record paths."""
    key, sep, rest = text.partition(" ")
    if not sep:
        return text
    path, split = rest, ""
    if m := re.fullmatch(r"(.*?)( \([^()]*\))", rest):
        path, split = m.group(1), m.group(2)
    return f"{key} {portable_path(path)}{split}"


def dataset_type(data_name: str) -> str:
    """The card's model-index ``dataset.type`` of an evaluation, from its data description:
    ``pool ../shared/data/ffhq128-real (val)`` (real faces, forgeries made by the project) ->
    ``ffhq128-real-own-forgeries``; ``folder ../shared/data/dev-gan (all)`` -> ``dev-gan``;
    ``deepfakebench_json .../Celeb-DF-v2.json (test)`` -> ``celeb-df-v2``. The Hub groups
    results by this type, so each data set needs its own."""
    text = re.sub(r"\s*\([^()]*\)\s*$", "", data_name.strip())
    key, _, where = text.partition(" ")
    if key in ("folder", "pool", "deepfakebench_json") and where:
        stem = PurePosixPath(where.strip().rstrip("/")).name
        if key == "deepfakebench_json" and stem.lower().endswith(".json"):
            stem = stem[:-5]
    else:
        stem = text
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-") or "custom"
    return f"{slug}-own-forgeries" if key == "pool" else slug


def load_metrics(paths: list[str | Path]) -> dict[str, dict[str, Any]]:
    """``{data description: metrics}`` from ``evaluate --out`` folders or their ``metrics.json`` files."""
    found: dict[str, dict[str, Any]] = {}
    for p in paths:
        p = Path(p)
        if p.is_dir():
            p = p / "metrics.json"
        data = json.loads(p.read_text(encoding="utf-8"))
        name = portable_description(str(data.get("data") or p.parent.name))
        if data.get("split"):
            name = f"{name} ({data['split']})"
        found[name] = data
    return found


def evaluation_entry(data_name: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """What ``extra["evaluation"]`` keeps of one ``evaluate`` metrics.json: the card's figures,
    and the localization of each map in the order evaluate listed them."""
    entry: dict[str, Any] = {"data": data_name, **{k: metrics.get(k) for k in EVALUATION_KEYS}}
    maps = (metrics.get("localization") or {}).get("maps") or {}
    if maps:
        entry["maps"] = [{"map": kind, "pixel_auc": v.get("pixel_auc"), "iou": v.get("iou")}
                         for kind, v in maps.items()]
    return entry


def with_evaluation(extra: dict[str, Any], metrics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``extra`` with ``metrics`` (``{data: metrics.json}``) stored in ``extra["evaluation"]``: an
    entry for the same data is replaced in place, a new one appended."""
    rows = [dict(e) for e in extra.get("evaluation") or []]
    for name, m in metrics.items():
        entry = evaluation_entry(name, m)
        at = next((i for i, e in enumerate(rows) if e.get("data") == name), None)
        if at is None:
            rows.append(entry)
        else:
            rows[at] = entry
    return {**extra, "evaluation": rows}


def _evaluation_rows(extra: dict[str, Any]) -> list[dict[str, Any]]:
    """``extra["evaluation"]`` as entries in order (a ``{data: metrics}`` mapping is read too)."""
    found = extra.get("evaluation") or []
    if isinstance(found, dict):
        found = [{"data": name, **m} for name, m in found.items()]
    return [e for e in found if isinstance(e, dict) and e.get("data")]


def record_command(extra: dict[str, Any], command: str) -> dict[str, Any]:
    """``extra`` with ``command`` appended to ``extra["made_by"]["commands"]``. A folder's first
    record starts the list with the training runs that made its weights (``training_history``,
    then ``training``), so it reads from the beginning. A command already last on the list (one run
    that wrote twice, as ``evaluate --calibrate --record``) is not added again."""
    made_by = dict(extra.get("made_by") or {})
    commands = list(made_by.get("commands") or [])
    if "made_by" not in extra:
        history = list(extra.get("training_history") or []) + [extra.get("training") or {}]
        commands = [h["command"] for h in history if h.get("command")]
    if command and commands[-1:] != [command]:
        commands.append(command)
    made_by["commands"] = commands
    return {**extra, "made_by": made_by}


def _made_by_lines(made_by: dict[str, Any]) -> list[str]:
    if not made_by or not (made_by.get("commands") or made_by.get("note")):
        return []
    lines = ["## How this folder was made", "", made_by.get("note") or MADE_BY_NOTE, ""]
    if made_by.get("commands"):
        lines += ["```bash", *made_by["commands"], "```", ""]
    if made_by.get("after"):
        lines += [made_by["after"], ""]
    return lines


def _init_lines(init: dict[str, Any] | list[dict[str, Any]] | None) -> list[str]:
    """Where the towers started (a recipe's ``model.init``, recorded by ``train``)."""
    if not init:
        return []
    if isinstance(init, list):
        return [line for one in init for line in _init_lines(one)]
    return [f"- The `{init.get('module', 'backbone')}` started from `{init.get('backbone')}` "
            f"({init.get('hub_id')}; offline from `{init.get('source')}`, licence {init.get('licence')}; "
            f"converted weights sha256 `{init.get('weights_sha256')}`), {init.get('tensors')} tensors loaded "
            f"strictly, its classifier head left out; this checkpoint holds the fine-tuned weights"]


def _gan_lines(data: dict[str, Any]) -> list[str]:
    if uses_gan_faces(data):
        return [f"- GAN faces: StyleGAN2 faces (thispersondoesnotexist) from `{data.get('gan_pool')}`, 128×128 "
                "JPEG q75, made by NVIDIA's non-commercial StyleGAN2 model; none of them is in `dev-gan`, which "
                "therefore measures the same generator on unseen faces, not an unseen kind."]
    return ["- No GAN-generated faces were used for training; `dev-gan` (StyleGAN2 faces) is evaluation-only."]


def model_card(detector, repo_id: str | None = None, license: str | None = None) -> ModelCard:
    """A model card for ``detector``, rendered from its config alone: ``extra`` supplies the training
    facts, the evaluation (``extra["evaluation"]``), how the folder was made (``extra["made_by"]``)
    and the repo id and licence ``export`` was given (``extra["card"]``; arguments win)."""
    cfg = detector.config
    extra = dict(cfg.extra or {})
    training = extra.get("training") or {}
    calibration = extra.get("calibration") or {}
    card_opts = extra.get("card") or {}
    name = repo_id or card_opts.get("repo_id") or default_repo_id(cfg.name)
    license = license or card_opts.get("license") or LICENSE
    rows = _evaluation_rows(extra)
    types = [dataset_type(e["data"]) for e in rows]
    eval_results = []
    for e, ds_type in zip(rows, types):
        if types.count(ds_type) > 1:  # the same data set twice (e.g. two splits): still one result each
            ds_type = f"{ds_type}-{re.sub(r'[^a-z0-9]+', '-', e['data'].lower()).strip('-')}"
        for key, (metric_type, pretty) in METRIC_NAMES.items():
            if e.get(key) is not None:
                eval_results.append(EvalResult(task_type="image-classification", task_name="Face forgery detection",
                                               dataset_type=ds_type, dataset_name=e["data"], metric_type=metric_type,
                                               metric_name=pretty, metric_value=round(float(e[key]), 4)))
    card_data = ModelCardData(
        library_name="forgery-lens", license=license, pipeline_tag="image-classification",
        tags=BASE_TAGS + [detector.family, cfg.name], datasets=["ffhq"],
        metrics=sorted({t for t, _ in METRIC_NAMES.values()}),
        model_name=name, eval_results=eval_results or None,
    )
    lines = [f"# {detector.display_name or detector.family} — `{cfg.name}` (Forgery Lens)", ""]
    lines += [f"A face-forgery detector from the **Forgery Lens** project, reimplementing *{detector.paper}*."
              if detector.paper else "A face-forgery detector from the **Forgery Lens** project.", ""]
    lines += ["## Model", "",
              f"- Registry name: `{cfg.name}` (family `{detector.family}`)",
              f"- Input: {cfg.input_size}×{cfg.input_size} RGB face crop (aligned, margin {cfg.crop_margin}, "
              f"{cfg.crop_size} px crop), normalised with mean {list(cfg.mean)} and std {list(cfg.std)}",
              f"- Parameters: {sum(p.numel() for p in detector.parameters()) / 1e6:.2f} M",
              f"- Decision threshold on `prob_fake`: {cfg.threshold:.4f}"
              + (f" (calibrated: {calibration.get('rule')}, on {calibration.get('data')})" if calibration else ""),
              f"- Backbone a user online would start from: `{cfg.pretrained_weights}`" if cfg.pretrained_weights
              else "- Trained from scratch (no pretrained weights).",
              *_init_lines(training.get("init")),
              "", "## How to use", "", "```python",
              "from detectors import create_detector",
              "",
              f'detector = create_detector("{cfg.name}", "{name}")',
              'verdict = detector.predict("face.jpg")  # largest face: crop, score, decide',
              "print(verdict)", "```", "",
              "Weights are `model.safetensors`, or shards of it under 16 MiB each with their index "
              "`model.safetensors.index.json` (no pickle); the loader checks every tensor name and shape.", ""]
    lines += ["## Training data", "",
              "- Real faces: FFHQ (Flickr-Faces-HQ, NVIDIA; images under their Flickr licences, collection under "
              "CC BY-NC-SA 4.0), downscaled to 128×128.",
              f"- Fake faces: synthesised by the project's own forgery generators from those real faces "
              f"({fake_kinds(training.get('data') or {})}).",
              *_gan_lines(training.get("data") or {})]
    if training.get("data"):
        lines.append(f"- Data section of the recipe: `{json.dumps(training['data'], sort_keys=True)}`")
    lines.append("")
    lines += ["## Training", ""]
    if training:
        lines += [f"- Recipe: `{repo_relative(training.get('recipe', ''))}`",
                  f"- This checkpoint was taken after {training.get('total_steps', 'n/a')} optimizer steps "
                  f"in all; its last stage, `{training.get('stage', '')}`, ran with "
                  f"`{json.dumps(training.get('train', {}), sort_keys=True)}`"]
        if training.get("validation"):
            v = training["validation"]
            lines.append(f"- Best validation (held-out split of the training data): AUC {_fmt(v.get('auc'))}, "
                         f"EER {_fmt(v.get('eer'))}, AP {_fmt(v.get('ap'))}")
        lines += ["", "Exact command:", "", "```bash", training.get("command", "python -m training train ..."), "```"]
        history = extra.get("training_history") or []
        if history:
            lines += ["", "It started (`--init`) from an earlier checkpoint, made by these runs in order:", "", "```bash"]
            lines += [f"{h.get('command', '?')}  # {h.get('total_steps', '?')} steps" for h in history] + ["```"]
    else:
        lines.append("No training record in `config.json` (not trained with `python -m training train`).")
    lines.append("")
    lines += ["## Evaluation", ""]
    if rows:
        lines += ["| data | frame AUC | video AUC | EER | AP | ACC | reals | fakes |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for e in rows:
            n_real, n_fake = ("" if e.get(k) is None else e[k] for k in ("n_real", "n_fake"))
            lines.append(f"| {e['data']} | {_fmt(e.get('auc'))} | {_fmt(e.get('video_auc'))} | {_fmt(e.get('eer'))} | "
                         f"{_fmt(e.get('ap'))} | {_fmt(e.get('acc'))} | {n_real} | {n_fake} |")
        for e in rows:
            for v in e.get("maps") or []:
                lines.append(f"\nLocalization on {e['data']}, map `{v.get('map')}`: pixel AUC {_fmt(v.get('pixel_auc'))}, "
                             f"best IoU {_fmt(v.get('iou'))}.")
        lines += ["", "Metrics: `python -m training evaluate` (scikit-learn; video AUC averages frame scores per video)."]
    else:
        lines.append("Not evaluated yet: run `python -m training evaluate ... --out DIR` and export with `--metrics DIR`.")
    lines += ["", "## Intended use", "", INTENDED_USE, "", "## Limitations", "", LIMITATIONS, "",
              "## Licence", "",
              f"`{license}`: the weights were trained on FFHQ (CC BY-NC-SA 4.0), so they are for non-commercial "
              "research and teaching only.", ""]
    lines += _made_by_lines(extra.get("made_by") or {})
    content = f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(lines)
    return ModelCard(content)


def write_weights_as(src: Path, dst: Path, dtype: str | None) -> list[str]:
    """Copy the weights of checkpoint folder ``src`` into folder ``dst`` (one file or shards, see
    :func:`detectors.weight_files.write_state`), floating tensors stored as ``dtype`` (integer
    buffers as they are, ``None`` keeps every dtype). Returns the file names written."""
    import torch

    target = getattr(torch, dtype) if dtype else None
    state = {k: (v.to(target) if target is not None and v.is_floating_point() else v).contiguous()
             for k, v in read_state(src).items()}
    return write_state(state, dst, metadata={"format": "pt"})


def _largest_weight_file(folder: Path) -> int:
    return max((folder / name).stat().st_size for name in weight_file_names(folder))


def export(detector, source_folder: Path, out_dir: Path, metrics: dict[str, dict[str, Any]] | None = None,
           repo_id: str | None = None, license: str | None = None, command: str | None = None) -> Path:
    """Write ``config.json``, the weights and ``README.md`` of ``detector`` (loaded from
    ``source_folder``) to ``out_dir``. The weights are rewritten (as ``storage_dtype``, sharded under
    the per-file limit), not copied byte for byte. ``metrics`` (:func:`load_metrics`) go into
    ``extra["evaluation"]``, a ``repo_id``/``license`` other than the defaults into
    ``extra["card"]``, and ``command`` (the export's own command line) onto
    ``extra["made_by"]["commands"]``, so the card renders from ``config.json`` alone."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    side_files = tuple(getattr(detector, "side_files", ()) or ())  # e.g. a tokenizer beside the weights
    for name in side_files:
        src = Path(source_folder) / name
        if src.is_file() and src.resolve() != (out_dir / name).resolve():
            shutil.copyfile(src, out_dir / name)
    extra = dict(detector.config.extra or {})
    if metrics:
        extra = with_evaluation(extra, metrics)
    defaults = {"repo_id": default_repo_id(detector.config.name), "license": LICENSE}
    card_opts = {**(extra.pop("card", None) or {}), **{k: v for k, v in (("repo_id", repo_id), ("license", license)) if v}}
    card_opts = {k: v for k, v in card_opts.items() if v != defaults.get(k)}
    if card_opts:
        extra["card"] = card_opts
    if command:
        extra = record_command(extra, command)
    detector.config.extra = extra
    dtype = None if detector.config.storage_dtype == "float32" else detector.config.storage_dtype
    in_place = Path(source_folder).resolve() == out_dir.resolve()
    if dtype or not in_place or _largest_weight_file(out_dir) > MAX_SHARD_BYTES:
        write_weights_as(Path(source_folder), out_dir, dtype)
    (out_dir / CONFIG_FILE).write_text(config_text(detector), encoding="utf-8", newline="")
    (out_dir / README_FILE).write_text(card_text(detector), encoding="utf-8", newline="")
    return out_dir


# ---- a folder's card and config, from its config.json ------------------------------------------

def config_text(detector) -> str:
    """``config.json`` as :meth:`detectors.base.Detector._save_pretrained` writes it."""
    meta = {"detector_family": detector.family, "format_version": FORMAT_VERSION}
    return json.dumps({**meta, **detector.config.to_dict()}, indent=2, sort_keys=True)


def card_text(detector) -> str:
    """``README.md`` as written to a folder: :func:`model_card` as text."""
    return str(model_card(detector))


def detector_from_folder(folder: Path):
    """The detector a checkpoint folder's ``config.json`` describes, built without its weights (what
    a card needs: the config, the family's names and the parameter count): on the meta device, so
    no tensor is allocated or initialised, unless the family cannot be built there."""
    import torch

    from detectors.errors import CheckpointMismatch
    from detectors.hub import read_config
    from detectors.registry import get_entry

    path = Path(folder) / CONFIG_FILE
    data = read_config(Path(folder))
    name = data.pop("name")
    data.pop("format_version", None)
    family = data.pop("detector_family", None)
    entry = get_entry(name)
    if family and family != entry.family:
        raise CheckpointMismatch(f"{path}: name {name!r} does not match family {family!r}")
    try:
        try:
            with torch.device("meta"):
                model = entry.factory(**data)
        except (NotImplementedError, RuntimeError):  # an operation the meta device lacks
            model = entry.factory(**data)
    except (TypeError, ValueError) as exc:
        raise CheckpointMismatch(f"{path}: {exc}") from None
    model.config.name = name
    return model


def folder_texts(folder: Path, detector=None) -> dict[str, str]:
    """``{file name: text}`` that ``config.json`` and ``README.md`` of ``folder`` should hold."""
    detector = detector if detector is not None else detector_from_folder(folder)
    return {CONFIG_FILE: config_text(detector), README_FILE: card_text(detector)}


def refresh_folder(folder: Path, command: str | None = None) -> list[Path]:
    """After a command changed ``folder/config.json``: append ``command`` to its
    ``extra["made_by"]["commands"]`` and rewrite ``config.json`` and, when the folder has a card
    (an exported folder; a training run's ``best/`` has none), ``README.md`` from it. Returns the
    files written."""
    folder = Path(folder)
    detector = detector_from_folder(folder)
    if command:
        detector.config.extra = record_command(dict(detector.config.extra or {}), command)
    texts = folder_texts(folder, detector)
    if not (folder / README_FILE).is_file():
        texts.pop(README_FILE)
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8", newline="")
    return [folder / name for name in texts]
