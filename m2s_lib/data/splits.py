"""Dataset splits of the paper: BUSI's stratified 4-fold cross-validation and video polyps split by clip."""
from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .layout import DatasetError, download_command, synth_command

__all__ = ["busi_folds", "default_clip_of", "video_clip_split"]


def _read_labels(labels) -> list[tuple[str, str]]:
    path = Path(labels).expanduser()
    if path.is_dir():
        path = path / "labels.csv"
    if not path.is_file():
        raise DatasetError(f"{path} does not exist: BUSI folds need labels.csv (columns name,class). "
                           f"Create the data with `{synth_command(path.parent, 'busi')}` or "
                           f"`{download_command(path.parent, 'busi')}`.")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"name", "class"} <= set(reader.fieldnames):
            raise DatasetError(f"{path} must have the columns name,class (got {reader.fieldnames})")
        rows = [(r["name"], r["class"]) for r in reader]
    if not rows:
        raise DatasetError(f"{path} lists no images")
    return rows


def busi_folds(labels, k: int = 4, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """Stratified k-fold cross-validation (the paper's 4-fold protocol on BUSI).

    ``labels`` is a ``labels.csv`` (columns name,class) or the folder holding it, or a list of (name, class) pairs.
    Within each class the names are shuffled with ``seed`` and dealt to the folds in turn (each class starting
    where the previous one stopped, so the fold sizes differ by at most one). Returns ``k`` pairs
    ``(train_names, test_names)``, sorted; the test parts partition all names.
    """
    rows = list(labels) if isinstance(labels, (list, tuple)) else _read_labels(labels)
    if k < 2:
        raise ValueError(f"k must be >= 2 (got {k})")
    if len(rows) < k:
        raise DatasetError(f"{len(rows)} images cannot be split into {k} folds")
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    start = 0
    for cls in sorted({c for _, c in rows}):
        names = sorted(n for n, c in rows if c == cls)
        names = [names[i] for i in rng.permutation(len(names))]
        for j, n in enumerate(names):
            fold_of[n] = (start + j) % k
        start = (start + len(names)) % k
    folds = []
    for f in range(k):
        test = sorted(n for n, i in fold_of.items() if i == f)
        train = sorted(n for n, i in fold_of.items() if i != f)
        folds.append((train, test))
    return folds


def default_clip_of(name: str) -> str:
    """Clip of a video frame name: the folder part (``clip3/0012``), else the text before the last ``_`` or ``-``
    (``12_0034`` -> ``12``, ``case5-10`` -> ``case5``), else the name without its trailing digits."""
    if "/" in name:
        return name.rsplit("/", 1)[0]
    m = re.match(r"^(.*)[_-][^_-]+$", name)
    if m:
        return m.group(1)
    return name.rstrip("0123456789") or name


def video_clip_split(names: Sequence[str], ratios: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0,
                     clip_of: Callable[[str], str] = default_clip_of) -> tuple[list[str], list[str], list[str]]:
    """Split video frames into (train, val, test) *by clip* (the paper: CVC-300 and CVC-612 clips 60/20/20).

    Clips are shuffled with ``seed``; round(ratio x number of clips) clips go to train and to val (at least one
    each when there are 3+ clips), the rest to test. All frames of a clip stay together."""
    if len(ratios) != 3 or min(ratios) < 0 or sum(ratios) <= 0:
        raise ValueError(f"ratios must be three non-negative numbers (got {ratios})")
    total = float(sum(ratios))
    clips: dict[str, list[str]] = {}
    for n in names:
        clips.setdefault(clip_of(n), []).append(n)
    keys = sorted(clips)
    rng = np.random.default_rng(seed)
    keys = [keys[i] for i in rng.permutation(len(keys))]
    n = len(keys)
    n_train = math.floor(n * ratios[0] / total + 0.5)
    n_val = math.floor(n * ratios[1] / total + 0.5)
    if n >= 3:
        n_train = min(max(n_train, 1 if ratios[0] > 0 else 0), n - 2)
        n_val = min(max(n_val, 1 if ratios[1] > 0 else 0), n - n_train - (1 if ratios[2] > 0 else 0))
    parts = (keys[:n_train], keys[n_train:n_train + n_val], keys[n_train + n_val:])
    return tuple(sorted(f for c in part for f in clips[c]) for part in parts)  # type: ignore[return-value]
