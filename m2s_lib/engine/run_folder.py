"""A run's output folder: what it holds, starting afresh (never over a previous run unless asked), resuming.

``out/`` holds :data:`RUN_FILES`: ``last.pt`` (every epoch), ``best.pt`` (best validation Dice), ``metrics.csv``
(one row per epoch, :mod:`m2s_lib.engine.history`) and ``config.yaml`` (the settings the run uses).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..backbones import CheckpointMismatchError
from ..config import Config
from .checkpoint import load_checkpoint

__all__ = ["RESUME_MAY_CHANGE", "RUN_FILES", "RunExistsError", "open_run_folder"]

RUN_FILES = ("last.pt", "best.pt", "metrics.csv", "config.yaml")
# Settings a resumed run may change; anything else must match the checkpoint's config.
RESUME_MAY_CHANGE = ("run.", "optim.epochs", "data.num_workers", "data.root", "data.val_root", "data.synthetic_dir")


class RunExistsError(RuntimeError):
    """The output folder already holds a run and neither ``resume`` nor ``overwrite`` was asked for."""


def _resume_checkpoint(out: Path, cfg: Config, is_main: bool, log: Callable[[str], None]) -> dict[str, Any]:
    last = out / "last.pt"
    if not last.is_file():
        raise FileNotFoundError(f"nothing to resume in {out}: it holds no last.pt")
    ckpt = load_checkpoint(last, map_location="cpu")
    saved = Config.from_saved(ckpt["config"])
    diff = {k: v for k, v in saved.diff(cfg).items() if not k.startswith(RESUME_MAY_CHANGE)}
    if diff:
        text = "; ".join(f"{k}: run {a!r}, asked {b!r}" for k, (a, b) in list(diff.items())[:8])
        err = CheckpointMismatchError if any(k.startswith("model.") for k in diff) else ValueError
        raise err(
            f"cannot resume {last}: its settings differ — {text}. Resume with the run's own settings "
            "(`m2s train --out DIR --resume` reads them from the checkpoint) or start a new run elsewhere"
        )
    if saved.optim.epochs != cfg.optim.epochs and is_main:
        log(f"note: epochs changed from {saved.optim.epochs} to {cfg.optim.epochs}; the learning-rate "
            "triangle is recomputed for the new length")  # fmt: skip
    return ckpt


def open_run_folder(out: Path | None, cfg: Config, *, resume: bool, overwrite: bool, is_main: bool,
                    log: Callable[[str], None]) -> dict[str, Any] | None:
    """Check ``out`` before a run starts. ``resume``: the checkpoint to continue from (``last.pt``, whose settings
    must match ``cfg`` except :data:`RESUME_MAY_CHANGE`). Otherwise ``None``, after refusing a folder that holds a
    run (:class:`RunExistsError`) unless ``overwrite``, which deletes that run's files (rank 0 only)."""
    if resume:
        if out is None:
            raise ValueError("resume needs an output folder (out=... / --out)")
        return _resume_checkpoint(out, cfg, is_main, log)
    if out is not None and out.exists():
        present = [f for f in RUN_FILES if (out / f).exists()]
        if present and not overwrite:
            raise RunExistsError(
                f"{out} already holds a run ({', '.join(present)}): pass --resume to continue it, "
                "--overwrite to delete those files and start again, or choose another --out folder"
            )
        if present and is_main:
            for f in present:
                (out / f).unlink()
    return None
