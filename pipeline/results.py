"""What one detector found on one face (:class:`DetectorResult`) and its JSON for the API.

:func:`jsonable` lives with :class:`~explain.base.Explanation`, whose data it turns into JSON;
it is re-exported here and from :mod:`pipeline`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from detectors import Verdict
from detectors.faces import AlignedFace
from detectors.measured import Measured
from explain.base import Explanation, explanation_json, jsonable

__all__ = ["DetectorResult", "jsonable", "measured_json"]


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
        item["explanations"] = [explanation_json(e, (image_index or {}).get(i))
                                for i, e in enumerate(self.explanations)]
        item["measured"] = measured_json(self.measured) if self.measured is not None else None
        return item


def measured_json(m: Measured) -> dict[str, Any]:
    """A checkpoint's recorded figures for the API and the cards (``skill`` is ``None`` when unmeasured)."""
    return {"skill": round(m.skill, 4) if m.kinds else None, "sentence": m.sentence(),
            "real_called_real": m.real_called_real,
            "kinds": [{"name": k.short, "kind": k.kind, "label": k.label, "auc": k.auc, "caught": k.caught,
                       "measured_on": k.measured_on} for k in m.kinds]}
