"""The checks that can fail, run on converted weights before they are cached (and by verify)."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .convert_keras import KITCHENWARE_CLASSES
from .errors import PretrainedError
from .loading import model_from_state_dict
from .pictures import preprocess_picture
from .sources import Backbone


def check_imagenet_top1(b: Backbone, state: dict[str, torch.Tensor], reference: dict) -> dict:
    import skimage.data

    model = model_from_state_dict(b, state)
    try:
        from timm.data import ImageNetInfo

        describe: Callable[[int], str] = ImageNetInfo().index_to_description
    except Exception:  # noqa: BLE001  # pragma: no cover - names are only for the report
        describe = str
    wanted = {"chelsea": set(range(281, 286)), "coffee": {967}}
    results, passed = {}, True
    with torch.inference_mode():
        for picture, classes in wanted.items():
            x = preprocess_picture(getattr(skimage.data, picture)(), b.preprocess)[None]
            probs = model(x).softmax(-1)[0]
            p, i = probs.max(0)
            results[picture] = {"top1": int(i), "name": describe(int(i)), "prob": round(float(p), 4),
                                "expected": sorted(classes)}
            passed &= int(i) in classes
    summary = ", ".join(f"{k} -> {v['top1']} {v['name']} ({v['prob']:.2f})" for k, v in results.items())
    return {"passed": bool(passed), "summary": summary, "results": results}


def _forward_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A timm model's last feature map (``forward_features``, which nn.Module does not declare)."""
    forward_features = getattr(model, "forward_features", None)
    if forward_features is None:
        raise PretrainedError(f"{type(model).__name__} has no forward_features: not a timm image model")
    return forward_features(x)


def check_kitchenware_head(b: Backbone, state: dict[str, torch.Tensor], reference: dict) -> dict:
    model = model_from_state_dict(b, state)
    with torch.inference_mode():
        features = _forward_features(model, reference["images"]).mean(dim=(2, 3))
        hidden = torch.relu(features @ reference["dense.weight"].T + reference["dense.bias"])
        logits = hidden @ reference["dense_1.weight"].T + reference["dense_1.bias"]
    predicted = logits.argmax(-1)
    labels = reference["labels"]
    accuracy = float((predicted == labels).float().mean())
    return {"passed": accuracy >= 0.75, "accuracy": round(accuracy, 4), "n": int(labels.numel()),
            "summary": f"kitchenware head on the converted features: {int((predicted == labels).sum())}/"
                       f"{labels.numel()} labelled pictures right (needs >= 75%)",
            "predicted": [KITCHENWARE_CLASSES[int(i)] for i in predicted],
            "labels": [KITCHENWARE_CLASSES[int(i)] for i in labels]}


ONNX_TOLERANCE = 1e-4


def check_onnx_reference(b: Backbone, state: dict[str, torch.Tensor], reference: dict) -> dict:
    with torch.inference_mode():
        if b.library == "transformers":
            model = model_from_state_dict(b, state)
            got = model(input_ids=reference["input_ids"], attention_mask=reference["attention_mask"]).last_hidden_state
            mask = reference["attention_mask"].bool()
            diff = (got - reference["expected"]).abs()[mask]
        else:
            size = int(reference["input"].shape[-1])
            model = model_from_state_dict(b, state, img_size=size)
            got = _forward_features(model, reference["input"])
            diff = (got - reference["expected"]).abs()
    worst = float(diff.max())
    return {"passed": worst <= ONNX_TOLERANCE, "max_abs_diff": worst, "mean_abs_diff": float(diff.mean()),
            "tolerance": ONNX_TOLERANCE,
            "summary": f"max |torch - onnx| = {worst:.2e} over {diff.numel()} values (tolerance {ONNX_TOLERANCE:g})"}


CHECKS: dict[str, Callable] = {
    "imagenet_top1": check_imagenet_top1,
    "kitchenware_head": check_kitchenware_head,
    "onnx_reference": check_onnx_reference,
}
