"""The metrics log (JSON lines) and its curves (PNG)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

LOG_FILE = "metrics.jsonl"


class MetricsLog:
    """Append-only JSON lines; ``truncate(n)`` drops lines written after a resumed checkpoint."""

    def __init__(self, out_dir: Path, enabled: bool = True) -> None:
        self.path = Path(out_dir) / LOG_FILE
        self.enabled = enabled

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(clean, sort_keys=True) + "\n")

    def count(self) -> int:
        if not self.path.is_file():
            return 0
        return sum(1 for _ in self.path.open(encoding="utf-8"))

    def truncate(self, n_lines: int) -> None:
        if not self.enabled or not self.path.is_file():
            return
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)[:n_lines]
        self.path.write_text("".join(lines), encoding="utf-8")

    def records(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_curves(log_path: Path, out_dir: Path) -> list[Path]:
    """``loss.png`` (training loss and learning rate per step) and ``val_metrics.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log = MetricsLog(Path(log_path).parent)
    log.path = Path(log_path)
    records = log.records()
    written = []
    train = [r for r in records if r.get("type") == "train"]
    if train:
        fig, ax = plt.subplots(figsize=(7, 4))
        for stage in dict.fromkeys(r["stage"] for r in train):
            rows = [r for r in train if r["stage"] == stage]
            ax.plot([r["total_step"] for r in rows], [r["loss"] for r in rows], label=f"loss ({stage})")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
        lr_ax = ax.twinx()
        lr_ax.plot([r["total_step"] for r in train], [r["lr"] for r in train], color="0.6", ls=":", label="lr")
        lr_ax.set_ylabel("learning rate")
        handles = ax.get_legend_handles_labels()[0] + lr_ax.get_legend_handles_labels()[0]
        ax.legend(handles=handles, loc="upper right", fontsize=8)
        fig.tight_layout()
        path = Path(out_dir) / "loss.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    val = [r for r in records if r.get("type") == "val"]
    if val:
        fig, ax = plt.subplots(figsize=(7, 4))
        for key in ("auc", "video_auc", "ap", "acc"):
            pts = [(r["total_step"], r[key]) for r in val if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=key)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("validation")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = Path(out_dir) / "val_metrics.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
