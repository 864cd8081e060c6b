"""What a detector says about one face."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Verdict:
    """A detector's decision on one face, with the crop it looked at.

    ``label`` is ``"fake"`` when ``prob_fake >= threshold``; ``source`` says which checkpoint
    decided (``demo``, ``hf-hub:org/repo@rev``, a local path or ``random``).
    """

    detector: str
    prob_fake: float
    threshold: float
    source: str
    crop: np.ndarray
    face_index: int = 0
    n_faces: int = 1
    aux: dict[str, Any] = field(default_factory=dict)

    @property
    def is_fake(self) -> bool:
        return self.prob_fake >= self.threshold

    @property
    def label(self) -> str:
        return "fake" if self.is_fake else "real"

    def summary(self) -> str:
        """One plain sentence, e.g. ``likely manipulated: 0.82 >= 0.64``."""
        digits = 2
        while digits < 6 and f"{self.prob_fake:.{digits}f}" == f"{self.threshold:.{digits}f}" \
                and self.prob_fake != self.threshold:
            digits += 1  # never print "0.78 < 0.78"
        p, t = f"{self.prob_fake:.{digits}f}", f"{self.threshold:.{digits}f}"
        if self.is_fake:
            return f"likely manipulated: {p} \u2265 {t}"
        return f"likely real: {p} < {t}"
