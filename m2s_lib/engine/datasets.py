"""The datasets a run trains and validates on, built from its config (``data.*``): a real dataset root, or the
synthetic stand-in generated once (by rank 0 of a torchrun job) under ``data.synthetic_dir``."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from torch.utils.data import Subset

from ..config import Config
from ..constants import in_repo
from ..data.folders import SegmentationFolder
from ..data.layout import resolve_train_root
from ..data.splits import busi_folds
from ..data.synthetic import ensure_synthetic
from .runtime import barrier, distributed_info

__all__ = ["build_datasets", "check_foreground", "resolve_data_root"]


def resolve_data_root(cfg: Config, log: Callable[[str], None] = print) -> Path:
    """The dataset root: ``data.root``, or synthetic data of ``data.task`` generated once under ``synthetic_dir``."""
    d = cfg.data
    if d.root is not None:
        root = Path(d.root).expanduser()
        if not root.exists():
            raise FileNotFoundError(
                f"data root {str(root)!r} does not exist: download a dataset with `m2s data download ...`, point "
                "--data-root at it, or leave --data-root out to train on synthetic data"
            )
        return root
    n_test = d.synthetic_n_test if d.task != "busi" else None
    root = in_repo(d.synthetic_root())  # a relative synthetic_dir (runs/data) lies under the repository root
    rank, _, _ = distributed_info()
    if rank == 0:
        log(f"no data root given: using synthetic {d.task} data in {root}")
        ensure_synthetic(d.task, root, d.synthetic_n, seed=d.synthetic_seed, size=d.synthetic_size,
                         n_test=n_test, progress=False, difficulty=d.synthetic_difficulty)  # fmt: skip
    barrier()
    return root


def _folder(root, cfg: Config, size: int, train: bool, names=None):
    d = cfg.data
    kw = dict(size=size, train=train, classes=cfg.model.classes, class_values=d.class_values, names=names)
    if train:
        kw.update(rotation=d.rotation, hflip=d.hflip)
    return SegmentationFolder(root, **kw)


def build_datasets(cfg: Config, log: Callable[[str], None] = print):
    """``(train_set, val_set or None, data_root)`` from the config (see :class:`m2s_lib.config.DataConfig`).

    Validation: ``data.val_root``; else for BUSI with ``data.fold`` the held-out fold; else a held-out
    ``data.val_fraction`` of the training folder chosen with ``run.seed``; else none.
    """
    d = cfg.data
    root = resolve_data_root(cfg, log)
    if d.task == "busi" and d.fold is not None:
        train_names, val_names = busi_folds(root, k=d.n_folds, seed=cfg.run.seed)[d.fold]
        return (_folder(root, cfg, d.size, True, names=train_names),
                _folder(root, cfg, d.eval_size, False, names=val_names), root)  # fmt: skip
    train_root = resolve_train_root(root)
    train_set = _folder(train_root, cfg, d.size, True)
    if d.val_root is not None:
        val_root = Path(d.val_root).expanduser()
        if not val_root.exists():
            raise FileNotFoundError(f"validation folder {str(val_root)!r} does not exist (data.val_root)")
        return train_set, _folder(val_root, cfg, d.eval_size, False), root
    if d.val_fraction > 0:
        n = len(train_set)
        n_val = max(1, int(round(d.val_fraction * n)))
        if n_val >= n:
            raise ValueError(f"data.val_fraction={d.val_fraction} leaves no training images out of {n}")
        order = np.random.default_rng(cfg.run.seed).permutation(n)
        val_idx, train_idx = sorted(order[:n_val].tolist()), sorted(order[n_val:].tolist())
        val_set = Subset(_folder(train_root, cfg, d.eval_size, False), val_idx)
        return Subset(train_set, train_idx), val_set, root
    return train_set, None, root


def check_foreground(dataset) -> None:
    """Refuse a training set whose masks are all empty (``SegmentationFolder.check_foreground``; a ``Subset``
    checks its own items). Datasets of other kinds are not checked."""
    if isinstance(dataset, Subset) and hasattr(dataset.dataset, "check_foreground"):
        dataset.dataset.check_foreground(list(dataset.indices))
    elif hasattr(dataset, "check_foreground"):
        dataset.check_foreground()
