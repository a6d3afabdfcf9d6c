"""Score test sets: predict them (:mod:`m2s_lib.engine.predict`), write the maps and the paper's tables.

Prediction follows the authors' test script, with nothing slid or tiled: each image is resized to the test size
(352), the logits are upsampled (bilinear) to the image's original size, and the sigmoid (one class) or arg-max
(several classes) is taken there. Maps are written as 8-bit PNGs — ``round(255·p)`` of the probability for one class
(not min-max stretched: the PraNet protocol normalises when scoring), the mask's own label values for several
classes — and scored from exactly those 8-bit values, so re-scoring the PNGs gives the same numbers.

``evaluate_checkpoint`` is ``m2s evaluate``: every test set under ``DATA/TestDataset`` (or ``DATA`` itself),
``OUT/<set>/<name>.png``, ``OUT/results.csv`` (one row per set), ``OUT/results.md`` (the same table and, for polyp,
the Table 1 layout), ``OUT/per_image/<set>.csv``. Which measures depends on the task (:mod:`m2s_lib.metrics`).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch.nn as nn
from PIL import Image

from ..atomic import write_text
from ..data.folders import SegmentationFolder
from ..data.layout import DatasetError, find_test_sets, image_pixels, load_mask
from ..metrics import (
    BUSI_COLUMNS,
    COVID_COLUMNS,
    POLYP_COLUMNS,
    results_table,
    score_map,
    table1,
    task_metric,
    to_markdown,
)
from .checkpoint import check_task, load_model
from .predict import labels_to_png, predict_dataset
from .run_folder import prepare_output_dir

__all__ = [
    "EVAL_MAX_PIXELS",
    "RESULT_COLUMNS",
    "check_scorable",
    "evaluate_checkpoint",
    "evaluate_folder",
    "evaluate_sets",
    "load_model",
    "write_tables",
]

# The largest test image scored, in pixels: the measures at the image's original size take about 80 bytes per pixel
# besides the ~1.1 GB of the loaded libraries, so larger images would take one evaluation past about 2 GB. The real
# test sets' largest frames are 1920 x 1072 (2.1 Mpx).
EVAL_MAX_PIXELS = 8_000_000
EVALUATE_OUTPUTS = ("results.csv", "results.md", "per_image")  # besides one prediction folder per test set

# results.csv columns per task (after ``dataset, n`` and before ``protocol``).
RESULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "polyp": POLYP_COLUMNS,
    "covid": COVID_COLUMNS,
    "busi": BUSI_COLUMNS,
}


def evaluate_folder(
    model: nn.Module,
    folder: str | os.PathLike,
    *,
    task: str = "polyp",
    protocol: str = "pranet",
    size: int = 352,
    classes: int | None = None,
    class_values: Sequence[int] | None = None,
    out_dir: str | os.PathLike | None = None,
    batch_size: int = 8,
    num_workers: int = 0,
    names: Sequence[str] | None = None,
    progress: bool = True,
    measures: Sequence[str] | None = None,
) -> tuple[dict[str, float], pd.DataFrame]:
    """Predict one folder (``images/`` + ``masks/``), optionally write ``out_dir/<name>.png``, and score it.

    Returns ``(scores, per_image DataFrame)``; the masks are read at their original size.
    """
    classes = classes or getattr(model, "classes", 1)
    ds = SegmentationFolder(folder, size=size, train=False, classes=classes, class_values=class_values, names=names)
    check_scorable(ds)
    metric = task_metric(task, classes, protocol, measures=measures)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    for i, name, prob in predict_dataset(model, ds, batch_size, num_workers, progress, desc=Path(folder).name):
        gt = load_mask(ds.mask_paths[i], classes, class_values)
        if classes > 1:
            labels = prob.argmax(0)
            if out is not None:
                Image.fromarray(labels_to_png(labels, class_values)).save(out / f"{name}.png")
            metric.update(labels, gt, name=name)
        else:
            pred8 = score_map(metric, prob, gt, name=name)  # the per-image step `m2s score` shares
            if out is not None:
                Image.fromarray(pred8).save(out / f"{name}.png")
    return metric.results(), metric.per_image()


def check_scorable(ds: SegmentationFolder) -> None:
    """Refuse (``DatasetError``) a test set whose masks are not of the model's kind (binary or label images,
    :meth:`SegmentationFolder.check_labels`) or holding an image over ``EVAL_MAX_PIXELS`` (read from the headers)."""
    for path in ds.image_paths:  # headers only: before any mask is decoded
        pixels = image_pixels(path)
        if pixels > EVAL_MAX_PIXELS:
            raise DatasetError(
                f"test image {path} has {pixels:,} pixels, more than the {EVAL_MAX_PIXELS:,} scored per image (the "
                "measures at the original size would need more than about 2 GB of memory): downscale it and its mask "
                "(e.g. to at most 2000 pixels a side), or predict it with `m2s predict`")
    ds.check_labels()


def evaluate_sets(
    model: nn.Module,
    sets: Mapping[str, str | os.PathLike] | str | os.PathLike,
    *,
    task: str = "polyp",
    protocol: str | None = None,
    size: int = 352,
    class_values: Sequence[int] | None = None,
    out: str | os.PathLike | None = None,
    batch_size: int = 8,
    progress: bool = True,
    measures: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Score several test sets (``{name: folder}`` or a data root searched with ``find_test_sets``).

    Returns the results table (one row per set: ``dataset``, ``n``, the task's measures, ``protocol``); with
    ``out``, predictions go to ``out/<set>/`` and per-image scores to ``out/per_image/<set>.csv``.
    """
    if not isinstance(sets, Mapping):
        sets = find_test_sets(sets)
    protocol = _protocol(task, protocol, getattr(model, "classes", 1))
    rows: dict[str, dict[str, float]] = {}
    for name, folder in sets.items():
        scores, per_image = evaluate_folder(
            model, folder, task=task, protocol=protocol if task == "polyp" else "pranet", size=size,
            class_values=class_values, out_dir=Path(out) / name if out is not None else None,
            batch_size=batch_size, progress=progress, measures=measures,
        )  # fmt: skip
        rows[name] = scores
        if out is not None:
            write_text(Path(out) / "per_image" / f"{name}.csv", per_image.to_csv(index=False))
    columns = RESULT_COLUMNS.get(task) if getattr(model, "classes", 1) == 1 else None
    if measures is not None and columns is not None:
        columns = tuple(c for c in columns if c in measures)
    return results_table(rows, protocol, columns=columns)


def _protocol(task: str, protocol: str | None, classes: int) -> str:
    if classes > 1 or task == "oct":
        return "oct"
    if task in ("covid", "busi"):
        return "binary@0.5"
    return protocol or "pranet"


def write_tables(results: pd.DataFrame, out: str | os.PathLike, task: str = "polyp", title: str | None = None) -> None:
    """``results.csv`` and ``results.md`` (with the Table 1 layout for polyp sets) in ``out``."""
    out = Path(out)
    write_text(out / "results.csv", results.to_csv(index=False, float_format="%.4f"))
    parts = [to_markdown(results, floatfmt=".4f", title=title or "Results per test set")]
    if task == "polyp" and "mDice" in results.columns:
        parts.append(to_markdown(table1(results), floatfmt=".3f", title="Table 1 layout"))
    write_text(out / "results.md", "\n".join(parts))


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    data_root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    size: int | None = None,
    protocol: str | None = None,
    sets: Iterable[str] | None = None,
    device: str | None = None,
    batch_size: int = 8,
    model: str | None = None,
    encoder_name: str = "res2net50d",
    task: str | None = None,
    progress: bool = True,
    overwrite: bool = True,
) -> pd.DataFrame:
    """``m2s evaluate``: load a checkpoint, score every test set of ``data_root``, write predictions and tables.

    ``size``, ``task``, ``protocol`` default to the checkpoint's config (``data.eval_size``, ``data.task``,
    ``run.eval_protocol``). ``sets`` restricts to some test-set names. ``out`` follows
    :func:`~m2s_lib.engine.run_folder.prepare_output_dir`: ``overwrite=True`` (the library default) replaces an
    earlier evaluation's files (so no stale set folder remains), ``False`` refuses them (``m2s evaluate`` without
    ``--overwrite``). Returns the results DataFrame.
    """
    net, cfg = load_model(checkpoint, device=device, model=model, encoder_name=encoder_name)
    task = task or cfg.data.task
    check_task(cfg, task, f"checkpoint {str(checkpoint)!r}")
    size = int(size or cfg.data.eval_size)
    root = Path(data_root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"data root {str(root)!r} does not exist")
    found = find_test_sets(root)
    if sets is not None:
        wanted = list(sets)
        missing = [s for s in wanted if s not in found]
        if missing:
            raise ValueError(f"test sets {missing} are not under {root}: found {sorted(found)}")
        found = {s: found[s] for s in wanted}
    for folder in found.values():  # checked before anything is written
        check_scorable(SegmentationFolder(folder, classes=cfg.model.classes, class_values=cfg.data.class_values))
    prepare_output_dir(out, "evaluate", [*EVALUATE_OUTPUTS, *found], overwrite)
    results = evaluate_sets(
        net, found, task=task, protocol=protocol or cfg.run.eval_protocol, size=size,
        class_values=cfg.data.class_values, out=out, batch_size=batch_size, progress=progress,
    )  # fmt: skip
    write_tables(results, out, task=task, title=f"{cfg.model.name} ({cfg.model.encoder_name}) — {Path(checkpoint).name}")
    return results


# ---------------------------------------------------------------------------------------------------------------
# m2s predict
