"""How well a checkpoint detects, by kind of fake: the figures ``training evaluate --record``
stores in its ``config.json`` (``extra.measured``), read back for the app and the model cards.

Nothing here is typed by hand: every number comes from a recorded evaluation, and a
checkpoint without one says so.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: AUC bands and the words that read them (lower bound, words), best first.
AUC_BANDS = (
    (0.9, "catches"),
    (0.75, "often catches"),
    (0.6, "is weak on"),
    (0.5, "is close to guessing on"),
    (0.0, "is worse than guessing on"),
)


@dataclass(frozen=True)
class KindFigure:
    """One kind of fake: its AUC against real faces and the share caught at the threshold."""

    kind: str
    label: str
    auc: float
    caught: float | None
    measured_on: str  # the set's own label, e.g. "the project's own forgeries, on held-out faces"

    @property
    def short(self) -> str:
        """The label without its explanation in brackets: "donor blends"."""
        return self.label.split(" (", 1)[0]

    @property
    def words(self) -> str:
        return next(words for lower, words in AUC_BANDS if round(self.auc, 2) >= lower)


@dataclass(frozen=True)
class Measured:
    """Every recorded figure of one checkpoint."""

    kinds: tuple[KindFigure, ...]
    real_called_real: float | None  # share of real faces called real at the threshold (worst set)
    sets: tuple[str, ...]

    @property
    def skill(self) -> float:
        """0 = guessing (or worse) on average over the measured kinds, 1 = perfect on all of them.

        The mean of ``2 * (AUC - 0.5)``, each clipped at 0: the weight of this detector's vote
        in the combined verdict.
        """
        if not self.kinds:
            return 0.0
        return sum(max(0.0, 2.0 * (k.auc - 0.5)) for k in self.kinds) / len(self.kinds)

    def sentence(self) -> str:
        """One sentence: what it catches and what it misses, worst last."""
        if not self.kinds:
            return "No measured accuracy is recorded for this checkpoint."
        groups: dict[str, list[KindFigure]] = {}
        for k in sorted(self.kinds, key=lambda k: -k.auc):
            groups.setdefault(k.words, []).append(k)
        parts = [f"{words} " + _join([f"{k.short} ({k.auc:.2f})" for k in items]) for words, items in groups.items()]
        return f"It {_join(parts, '; ')} (AUC: 0.5 = guessing, 1 = perfect)."


def measured_of(config: Any) -> Measured:
    """The recorded figures of a checkpoint (a detector config or its ``config.json`` dict)."""
    extra = config.get("extra", {}) if isinstance(config, dict) else getattr(config, "extra", {})
    records = (extra or {}).get("measured") or {}
    kinds: list[KindFigure] = []
    specificity: list[float] = []
    for name in sorted(records):
        record = records[name]
        for kind, figure in (record.get("kinds") or {}).items():
            if figure.get("auc") is not None:
                kinds.append(KindFigure(kind, figure.get("label") or kind, float(figure["auc"]), figure.get("caught"),
                                        record.get("label", name)))
        if record.get("real_called_real") is not None:
            specificity.append(float(record["real_called_real"]))
    return Measured(tuple(kinds), min(specificity) if specificity else None, tuple(sorted(records)))


def _join(items: list[str], sep: str = ", ") -> str:
    if len(items) <= 1:
        return "".join(items)
    if sep != ", ":
        return sep.join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
