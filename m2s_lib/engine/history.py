"""A run's metric log: one row per epoch in memory, in ``metrics.csv`` and as one plain summary line."""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from ..atomic import atomic_path

__all__ = ["METRICS_COLUMNS", "epoch_summary", "write_metrics_csv"]

METRICS_COLUMNS = (
    "epoch", "step", "lr_encoder", "lr_head", "train_loss", "train_structure", "train_lossnet",
    "val_dice", "val_iou", "val_mae", "time_s", "images_per_s",
)  # fmt: skip


def _csv_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key in METRICS_COLUMNS:
        value = row.get(key)
        if isinstance(value, float):
            out[key] = "" if math.isnan(value) else f"{value:.6g}" if key.startswith(("lr_",)) else f"{value:.6f}"
        else:
            out[key] = value
    return out


def write_metrics_csv(path: Path, history: list[dict[str, Any]], rewrite: bool = False) -> None:
    """Append the last row of ``history`` to ``path`` (``metrics.csv``), or write all rows afresh (``rewrite``, or
    when the file does not exist yet) atomically."""
    if rewrite or not path.exists():
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=METRICS_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for row in history if rewrite else history[-1:]:
                writer.writerow(_csv_row(row))
        return
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=METRICS_COLUMNS, extrasaction="ignore")
        for row in history[-1:]:
            writer.writerow(_csv_row(row))


def epoch_summary(row: dict[str, Any], epochs: int, lossnet: bool, saved: bool, improved: bool) -> str:
    """The one plain line printed after each epoch (readable in papermill logs)."""
    val = (f" | val Dice {row['val_dice']:.4f} IoU {row['val_iou']:.4f} MAE {row['val_mae']:.4f}"
           if not math.isnan(row["val_dice"]) else "")  # fmt: skip
    parts = f"structure {row['train_structure']:.4f}"
    if lossnet:
        parts += f", lossnet {row['train_lossnet']:.4f}"
    written = (" | saved last.pt" + (" + best.pt" if improved else "")) if saved else ""
    return (
        f"epoch {row['epoch']}/{epochs} | step {row['step']} | loss {row['train_loss']:.4f} "
        f"({parts}) | lr {row['lr_encoder']:.2e}/{row['lr_head']:.2e}{val} | {row['time_s']:.1f} s, "
        f"{row['images_per_s']:.1f} img/s{written}"
    )
