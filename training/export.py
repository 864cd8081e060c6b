"""Model cards (README.md with Hub metadata) for trained detectors, and the export of a
checkpoint folder ready for ``push``.

Metrics come from ``evaluate --out DIR`` (``DIR/metrics.json``) files, and the training
facts (data, command, steps, validation AUC) from the ``extra["training"]`` entry that
``train`` writes into the checkpoint's ``config.json``.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from detectors.base import CONFIG_FILE
from detectors.file_format import MAX_SHARD_BYTES
from detectors.weight_files import read_state, weight_file_names, write_state

from .recipes import repo_relative

LICENSE = "cc-by-nc-sa-4.0"
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


def load_metrics(paths: list[str | Path]) -> dict[str, dict[str, Any]]:
    """``{data description: metrics}`` from ``evaluate --out`` folders or their ``metrics.json`` files."""
    found: dict[str, dict[str, Any]] = {}
    for p in paths:
        p = Path(p)
        if p.is_dir():
            p = p / "metrics.json"
        data = json.loads(p.read_text(encoding="utf-8"))
        name = str(data.get("data") or p.parent.name)
        if data.get("split"):
            name = f"{name} ({data['split']})"
        found[name] = data
    return found


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


def model_card(detector, metrics: dict[str, dict[str, Any]] | None = None, repo_id: str | None = None,
               license: str = LICENSE) -> ModelCard:
    """A model card for ``detector`` (its config's ``extra`` supplies training facts)."""
    cfg = detector.config
    extra = dict(cfg.extra or {})
    training = extra.get("training") or {}
    calibration = extra.get("calibration") or {}
    metrics = metrics or {}
    name = repo_id or f"forgery-lens/{cfg.name}"
    eval_results = []
    for data_name, m in metrics.items():
        for key, (metric_type, pretty) in METRIC_NAMES.items():
            if m.get(key) is not None:
                eval_results.append(EvalResult(task_type="image-classification", task_name="Face forgery detection",
                                               dataset_type="custom", dataset_name=data_name, metric_type=metric_type,
                                               metric_name=pretty, metric_value=round(float(m[key]), 4)))
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
    if metrics:
        lines += ["| data | frame AUC | video AUC | EER | AP | ACC | reals | fakes |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for data_name, m in metrics.items():
            lines.append(f"| {data_name} | {_fmt(m.get('auc'))} | {_fmt(m.get('video_auc'))} | {_fmt(m.get('eer'))} | "
                         f"{_fmt(m.get('ap'))} | {_fmt(m.get('acc'))} | {m.get('n_real', '')} | {m.get('n_fake', '')} |")
        for data_name, m in metrics.items():
            for kind, v in ((m.get("localization") or {}).get("maps") or {}).items():
                lines.append(f"\nLocalization on {data_name}, map `{kind}`: pixel AUC {_fmt(v.get('pixel_auc'))}, "
                             f"best IoU {_fmt(v.get('iou'))}.")
        lines += ["", "Metrics: `python -m training evaluate` (scikit-learn; video AUC averages frame scores per video)."]
    else:
        lines.append("Not evaluated yet: run `python -m training evaluate ... --out DIR` and export with `--metrics DIR`.")
    lines += ["", "## Intended use", "", INTENDED_USE, "", "## Limitations", "", LIMITATIONS, "",
              "## Licence", "",
              f"`{license}`: the weights were trained on FFHQ (CC BY-NC-SA 4.0), so they are for non-commercial "
              "research and teaching only.", ""]
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
           repo_id: str | None = None, license: str = LICENSE) -> Path:
    """Copy ``config.json`` and the weights to ``out_dir`` and write its ``README.md``. The weights
    are rewritten (as ``storage_dtype``, sharded under the per-file limit), not copied byte for byte."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    side_files = tuple(getattr(detector, "side_files", ()) or ())  # e.g. a tokenizer beside the weights
    for name in (CONFIG_FILE, *side_files):
        src = Path(source_folder) / name
        if name in side_files and not src.is_file():
            continue
        if src.resolve() != (out_dir / name).resolve():
            shutil.copyfile(src, out_dir / name)
    dtype = None if detector.config.storage_dtype == "float32" else detector.config.storage_dtype
    in_place = Path(source_folder).resolve() == out_dir.resolve()
    if dtype or not in_place or _largest_weight_file(out_dir) > MAX_SHARD_BYTES:
        write_weights_as(Path(source_folder), out_dir, dtype)
    model_card(detector, metrics, repo_id=repo_id, license=license).save(out_dir / "README.md")
    return out_dir
