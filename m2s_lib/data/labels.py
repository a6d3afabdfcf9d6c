"""The masks of a dataset checked against what a run reads them as, before it trains or evaluates.

* A synthetic dataset's ``m2s_synthetic.json`` names its task: data of a binary task (polyp, busi, covid) read as
  label images of 3+ classes, or OCT label images read as binary masks, is refused at once, naming the file.
* Label images of 3+ classes (``classes > 2``): the masks together must hold more than two values; masks holding only
  two (0 and 255: binary masks) are refused (otherwise 0 would be read as GOALS' RNFL and 255 as background).
* Binary masks (``classes == 1``): the first masks must not all be label images of several classes (single grey
  values such as 80 and 160 over large areas, :func:`~m2s_lib.data.layout.mask_value_problem`).
* Training only: a set whose masks are all empty (background only), or all full (object only), after reading by
  the mask rule, has nothing to learn and is refused.

Errors are :class:`~m2s_lib.data.layout.DatasetError` naming the folder and what to do. Torch-free.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..constants import TASKS
from .layout import DatasetError, _binary_mask_read, _label_values, _mask_values, _open, load_mask

__all__ = ["LABEL_TASKS", "check_mask_set", "manifest_task"]

LABEL_TASKS = ("oct",)  # tasks whose masks are label images of several classes; the others are binary
_MANIFEST = "m2s_synthetic.json"  # written by m2s_lib.data.synthetic (its MANIFEST)
_LABEL_SAMPLE = 3  # binary masks: how many are looked at for label images


def manifest_task(folder: Path | str) -> tuple[str, Path] | None:
    """``(task, manifest path)`` of the synthetic dataset ``folder`` belongs to (its ``m2s_synthetic.json`` in the
    folder or up to two levels above: ``root/TrainDataset``, ``root/TestDataset/<set>``), or ``None`` (real data,
    or a manifest without a known task)."""
    folder = Path(folder)
    for parent in [folder, *list(folder.parents)[:2]]:
        path = parent / _MANIFEST
        if path.is_file():
            try:
                task = json.loads(path.read_text()).get("task")
            except (OSError, ValueError, AttributeError):
                return None
            return (task, path) if task in TASKS else None
    return None


def _expects(classes: int, class_values: Sequence[int] | None) -> str:
    if classes == 1:
        return "binary masks (one class)"
    return f"label images of {classes} classes (values {', '.join(str(v) for v in class_values or ())})"


def _check_manifest(folder: Path, classes: int, class_values: Sequence[int] | None) -> None:
    found = manifest_task(folder)
    if found is None or classes == 2:
        return
    task, path = found
    if (classes > 2) == (task in LABEL_TASKS):
        return
    kind = "label images of several classes" if task in LABEL_TASKS else "binary masks"
    want = "a label task such as oct (--profile paper-oct)" if classes == 1 else "a binary task (e.g. --profile tiny or paper-polyp)"
    raise DatasetError(
        f"{folder} is synthetic {task} data ({path} says task {task}: {kind}), but they are read here as "
        f"{_expects(classes, class_values)}: use {want} for this data, or data of the run's task")


def _check_label_values(mask_paths: Sequence[Path], mask_dir: Path, classes: int, class_values) -> None:
    seen: set[int] = set()
    for path in mask_paths:
        vals = _mask_values(_open(path))
        seen.update(int(v) for v in np.unique(vals)[:64])
        if len(seen) > 2:
            return
    shown = " and ".join(str(v) for v in sorted(seen))
    kind = "binary masks, e.g. polyp" if seen <= {0, 1, 255} else "two classes only"
    raise DatasetError(
        f"the masks in {mask_dir} hold only the values {shown} ({kind}), but {_expects(classes, class_values)} are "
        "expected: train or evaluate a binary task on these masks (e.g. --profile paper-polyp), or point at label "
        "images of the run's classes")


def _check_not_label_images(mask_paths: Sequence[Path], mask_dir: Path) -> None:
    sample = list(mask_paths[:_LABEL_SAMPLE])
    found = []
    for path in sample:
        values = _label_values(_binary_mask_read(path)[0])
        if values is None:
            return
        found = values
    if sample:
        raise DatasetError(
            f"the masks in {mask_dir} are label images of several classes (e.g. {sample[0].name} holds the values "
            f"{found[:8]}), but binary masks are expected: use a multi-class task (e.g. --profile paper-oct for GOALS "
            "labels), or masks of background 0 and foreground 255")


def _check_not_trivial(mask_paths: Sequence[Path], mask_dir: Path, classes: int, class_values) -> None:
    some_object = some_background = False
    for path in mask_paths:
        mask = load_mask(path, classes, class_values)
        some_object = some_object or bool((mask > 0).any())
        some_background = some_background or classes > 1 or bool((mask == 0).any())
        if some_object and some_background:
            return
    rule = ("masks with an alpha channel are read from it, paletted ones by index, masks whose largest value is at "
            "most 7 as 0/1, others as foreground >= 128")
    if not some_object:
        raise DatasetError(
            f"all {len(mask_paths)} masks in {mask_dir} are empty (background only) after reading, so there is "
            f"nothing to learn ({rule}): check the values with `m2s data verify ... --deep`, or point at the right "
            "masks/ folder")
    raise DatasetError(
        f"all {len(mask_paths)} masks in {mask_dir} are full (every pixel is object) after reading, so there is "
        f"nothing to learn ({rule}): check the values with `m2s data verify ... --deep` (an inverted mask, or white "
        "masks whose object is only in the alpha channel?), or point at the right masks/ folder")


def check_mask_set(mask_paths: Sequence[Path], *, folder: Path, mask_dir: Path, classes: int = 1,
                   class_values: Sequence[int] | None = None, training: bool = False) -> None:
    """Refuse masks that do not fit the run's reading of them (see the module docstring); ``training`` adds the
    all-empty / all-full check. Cheap on fitting data: the manifest, then one to three masks."""
    _check_manifest(Path(folder), classes, class_values)
    if classes > 2:
        _check_label_values(mask_paths, mask_dir, classes, class_values)
    elif classes == 1:
        _check_not_label_images(mask_paths, mask_dir)
    if training:
        _check_not_trivial(mask_paths, mask_dir, classes, class_values)
