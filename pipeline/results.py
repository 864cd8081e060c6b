"""What one detector found on one face (:class:`DetectorResult`) and its JSON for the API."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detectors import Verdict
from detectors.faces import AlignedFace
from detectors.measured import Measured
from explain.base import Explanation


@dataclass
class DetectorResult:
    """What one card shows: status, verdict, evidence, where the weights came from."""

    family: str
    name: str
    title: str
    paper: str
    status: str  # "ok" | "missing" | "error" | "off"
    message: str = ""
    requested_source: str = ""
    source: str = ""
    verdict: Verdict | None = None
    explanations: list[Explanation] = field(default_factory=list)
    aligned: AlignedFace | None = None
    seconds: float = 0.0
    measured: Measured | None = None  # how well this checkpoint detects, by kind (recorded figures)

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.verdict is not None

    def to_json(self, image_index: dict[int, int] | None = None) -> dict[str, Any]:
        """The API's view: numbers and text; ``image_index`` maps explanation -> gallery index."""
        v = self.verdict
        item: dict[str, Any] = {
            "name": self.name, "family": self.family, "title": self.title, "status": self.status,
            "prob_fake": round(v.prob_fake, 6) if v else None, "threshold": round(v.threshold, 6) if v else None,
            "label": v.label if v else None, "summary": v.summary() if v else None,
            "source": self.source or None, "requested_source": self.requested_source,
            "message": self.message, "seconds": round(self.seconds, 3),
        }
        item["explanations"] = [
            {"kind": e.kind, "title": e.title, "caption": e.caption, "data": jsonable(e.data),
             "image": (image_index or {}).get(i)}
            for i, e in enumerate(self.explanations)
        ]
        item["measured"] = measured_json(self.measured) if self.measured is not None else None
        return item


def measured_json(m: Measured) -> dict[str, Any]:
    """A checkpoint's recorded figures for the API and the cards (``skill`` is ``None`` when unmeasured)."""
    return {"skill": round(m.skill, 4) if m.kinds else None, "sentence": m.sentence(),
            "real_called_real": m.real_called_real,
            "kinds": [{"name": k.short, "kind": k.kind, "label": k.label, "auc": k.auc, "caught": k.caught,
                       "measured_on": k.measured_on} for k in m.kinds]}


#: Arrays up to this many elements go into the API as lists; larger ones as their shape.
MAX_JSON_ARRAY = 256


def jsonable(value: Any) -> Any:
    """Numbers, strings, short lists; numpy turned into Python; big arrays summarised."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.size <= MAX_JSON_ARRAY:
            return jsonable(value.tolist())
        return {"shape": list(value.shape), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float):
        return round(value, 6) if np.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)
