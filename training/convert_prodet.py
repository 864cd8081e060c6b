"""Convert the authors' ProDet checkpoint (a DeepfakeBench state dict) into a ``prodet_full`` checkpoint.

The authors release ``ProDet_best.pth``: the state dict of their DeepfakeBench ``ProDetDetector``
(``beautyremain/ProDet``, ``training/detectors/ProDet_detector.py``). Its keys:

- ``backbone.efficientnet.*``: efficientnet_pytorch's EfficientNet-B4 (``_conv_stem``, ``_bn0``,
  ``_blocks.N.*``, ``_conv_head``, ``_bn1``); DeepfakeBench replaced the stem with an unpadded
  ``Conv2d(3, 48, 3, stride=2)``. Mapped by position onto timm's ``tf_efficientnet_b4``
  (:func:`detectors.pretrained.lukemelas_to_timm`), built with the authors' paddings
  (``backbone_padding: efficientnet_pytorch``).
- ``adjust_feature``, ``blend_classifier``, ``ID_inconsistency_classifier``,
  ``deepfake_classifier``, ``final_classifier``: this project's ``adjust`` and four heads.
- ``fea_att.inverse_conv{1,2,3}`` (lifting the deepfake, blending and identity logits, in the
  order the authors' forward passes them) and ``fea_att.attention``.
- ``real2sbi``, ``sbi2bi``, ``bi2fake`` (``noise_process``, ``concat_process``): the training-only
  transition blocks; kept when present.
- ``backbone.last_layer`` (the backbone's own classifier) and ``re_classifier`` are never used by
  the detector's forward and are left out.

Usage (the ``.pth`` is a pickle: it is read here once with ``torch.load(weights_only=True)``, as
an explicit conversion step; what is written is safetensors)::

    python -m training.convert_prodet ProDet_best.pth --out checkpoints/prodet_authors
    # then: create_detector("prodet_full", "checkpoints/prodet_authors"), or that folder on the app's ProDet card

The feature width, head width and input size are read from the tensors' shapes. The anchors of
the real -> blendfake -> deepfake picture are not in the authors' file: fit them on your data with
``python -m training.methods.prodet fit-anchors checkpoints/prodet_authors``. The decision
threshold stays 0.5 (the authors' ``prob > 0.5``).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from detectors.prodet import TRANSITIONS

BACKBONE_PREFIX = "backbone.efficientnet."
#: the authors' module prefix -> this project's
HEAD_MAP = {
    "adjust_feature.": "adjust.",
    "blend_classifier.": "blend_head.",
    "ID_inconsistency_classifier.": "identity_head.",
    "deepfake_classifier.": "deepfake_head.",
    "final_classifier.": "final_head.",
    "fea_att.inverse_conv1.": "feature_attention.lifts.0.",
    "fea_att.inverse_conv2.": "feature_attention.lifts.1.",
    "fea_att.inverse_conv3.": "feature_attention.lifts.2.",
    "fea_att.attention.": "feature_attention.attention.",
}
#: the authors' drift blocks -> this project's transition blocks
DRIFT_MAP = dict(zip(("real2sbi", "sbi2bi", "bi2fake"), TRANSITIONS))
DRIFT_PARTS = {"noise_process.": "noise.", "concat_process.": "merge."}
#: in the authors' state dict, never used by the detector's forward
UNUSED_PREFIXES = ("backbone.last_layer.", "re_classifier.")
#: state the authors' file does not have: the explanation's anchors (fitted afterwards)
OWN_ONLY_PREFIX = "anchor"
AUTHORS_BACKBONE = "tf_efficientnet_b4"
WRAPPERS = ("module.",)  # DataParallel / DDP saves


class ConversionError(ValueError):
    """A file that is not the authors' ProDet state dict, or one that does not fit."""


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The authors' ``.pth`` as a flat tensor dict (tensors only are unpickled)."""
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every unpickling failure reads the same to the user
        raise ConversionError(f"{path}: cannot be read as a tensors-only checkpoint ({exc})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConversionError(f"{path}: not a state dict of tensors")
    return {_unwrap(k): v for k, v in state.items()}


def _unwrap(key: str) -> str:
    for prefix in WRAPPERS:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def _rename(key: str) -> str | None:
    """This project's name for one of the authors' head / attention / drift tensors, else None."""
    for old, new in HEAD_MAP.items():
        if key.startswith(old):
            return new + key[len(old):]
    block, _, rest = key.partition(".")
    if block in DRIFT_MAP:
        for old, new in DRIFT_PARTS.items():
            if rest.startswith(old):
                return f"transition.{DRIFT_MAP[block]}.{new}{rest[len(old):]}"
    return None


def config_from_state(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """``prodet_full`` overrides that reproduce the authors' model: widths and input size from shapes."""
    try:
        adjust = state["adjust_feature.weight"]
        hidden = state["blend_classifier.2.weight"]
        lift = state["fea_att.inverse_conv1.4.weight"]
    except KeyError as exc:
        raise ConversionError(f"not a ProDet state dict: no {exc.args[0]}") from None
    side = int(lift.shape[-1])
    return {"backbone": AUTHORS_BACKBONE, "backbone_padding": "efficientnet_pytorch",
            "feature_dim": int(adjust.shape[0]), "head_dim": int(hidden.shape[0]),
            "input_size": 32 * side, "crop_size": 32 * side,
            "transition_blocks": any(k.split(".", 1)[0] in DRIFT_MAP for k in state),
            "pretrained_weights": ""}


def convert_state(state: dict[str, torch.Tensor]):
    """The authors' state dict -> a ``prodet_full`` detector holding exactly its tensors."""
    from detectors import create_detector
    from detectors.pretrained import ConversionError as BackboneMismatch
    from detectors.pretrained import lukemelas_to_timm

    overrides = config_from_state(state)
    model = create_detector("prodet_full", source="random", **overrides)
    own = model.state_dict()
    backbone = {k[len(BACKBONE_PREFIX):]: v for k, v in state.items() if k.startswith(BACKBONE_PREFIX)}
    try:
        out = {f"backbone.{k}": v for k, v in lukemelas_to_timm(backbone, model.backbone.state_dict()).items()}
    except BackboneMismatch as exc:
        raise ConversionError(f"the backbone is not efficientnet_pytorch's EfficientNet-B4: {exc}") from None
    unknown = []
    for key, value in state.items():
        if key.startswith((BACKBONE_PREFIX, *UNUSED_PREFIXES)):
            continue
        name = _rename(key)
        if name is None or name not in own:
            unknown.append(key)
            continue
        if tuple(value.shape) != tuple(own[name].shape):
            raise ConversionError(f"{key} {tuple(value.shape)} does not fit {name} {tuple(own[name].shape)}")
        out[name] = value.detach().to(own[name].dtype).clone()
    if unknown:
        raise ConversionError(f"{len(unknown)} tensor(s) this converter does not know, e.g. {', '.join(unknown[:3])}")
    missing = sorted(k for k in own if k not in out and not k.startswith(OWN_ONLY_PREFIX))
    if missing:
        raise ConversionError(f"{len(missing)} tensor(s) missing from the file, e.g. {', '.join(missing[:3])}")
    out.update({k: v for k, v in own.items() if k.startswith(OWN_ONLY_PREFIX)})
    model.load_state_dict(out, strict=True)
    return model.eval()


def convert(src: str | Path, out_dir: str | Path) -> Path:
    """``src`` (the authors' .pth) -> a checkpoint folder that ``create_detector`` / the app load."""
    model = convert_state(read_checkpoint(src))
    model.config.extra = {**model.config.extra, "converted_from": {
        "file": Path(src).name, "source": "beautyremain/ProDet (ProDet_best.pth, a DeepfakeBench state dict)",
        "command": f"python -m training.convert_prodet {Path(src).name} --out {Path(out_dir).name}"}}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.convert_prodet", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="the authors' ProDet_best.pth (DeepfakeBench state dict)")
    parser.add_argument("--out", required=True, help="checkpoint folder to write (config.json + safetensors weights)")
    args = parser.parse_args(argv)
    try:
        out = convert(args.checkpoint, args.out)
    except ConversionError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(f"wrote {out}: a prodet_full checkpoint (EfficientNet-B4 with the authors' paddings). Fit the "
          f"explanation's anchors with: python -m training.methods.prodet fit-anchors {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
