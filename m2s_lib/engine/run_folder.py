"""A run's output folder: what it holds, starting afresh (never over a previous run unless asked), resuming.

``out/`` holds :data:`RUN_FILES`: ``last.pt`` (every epoch), ``best.pt`` (best validation Dice), ``metrics.csv``
(one row per epoch, :mod:`m2s_lib.engine.history`) and ``config.yaml`` (the settings the run uses).

``m2s evaluate`` and ``m2s predict`` follow the same rule through :func:`prepare_output_dir`: a folder never holds
two runs. Each run lists what it writes in ``OUT/m2s_outputs.json``; a folder holding an earlier run's outputs is
refused unless ``overwrite``, which deletes those outputs, and only those, first. Other files are never touched,
and a run never writes into a folder it did not make (a dataset's ``masks/``, a user's folder named like a test set).
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..backbones import CheckpointMismatchError
from ..config import Config
from .checkpoint import load_checkpoint

__all__ = ["OUTPUTS_MANIFEST", "RESUME_MAY_CHANGE", "RUN_FILES", "RunExistsError", "open_run_folder",
           "prepare_output_dir"]

RUN_FILES = ("last.pt", "best.pt", "metrics.csv", "config.yaml")
OUTPUTS_MANIFEST = "m2s_outputs.json"  # what an evaluate / predict run wrote (prepare_output_dir)
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


def _own_name(name: str) -> bool:
    """A plain child name (never a path that could point outside the output folder)."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name


def _earlier_outputs(manifest: Path, command: str) -> tuple[str, list[str]]:
    try:
        saved = json.loads(manifest.read_text())
        return str(saved.get("command", command)), [str(o) for o in saved.get("outputs", []) if _own_name(str(o))]
    except (OSError, ValueError, AttributeError):
        return command, []


def prepare_output_dir(out: str | Path, command: str, outputs: Iterable[str], overwrite: bool) -> Path:
    """The output-folder rule of ``m2s evaluate`` / ``m2s predict`` (``command``), before anything is written.

    Only what an earlier run of ``command`` listed in ``out/m2s_outputs.json`` counts as its own. Those outputs are
    refused with :class:`RunExistsError` unless ``overwrite``, which deletes them (and nothing else). An entry of
    ``outputs`` that exists but is not listed there (a ``masks/`` folder of a dataset, a user's folder named like
    a test set, outputs of an older version) is never deleted or written into: refused even with ``overwrite``.
    Then the new run's ``outputs`` are listed in the manifest. Returns ``out`` as a Path."""
    from ..atomic import write_text

    out = Path(out).expanduser()
    outputs = [o for o in dict.fromkeys(outputs) if _own_name(o)]
    manifest = out / OUTPUTS_MANIFEST
    earlier, listed = _earlier_outputs(manifest, command) if manifest.is_file() else (command, [])
    if manifest.is_file() and earlier != command:
        raise RunExistsError(f"{out} holds the outputs of `m2s {earlier}` ({OUTPUTS_MANIFEST}): choose another --out "
                             f"folder for `m2s {command}`")
    foreign = [o for o in outputs if (out / o).exists() and o not in listed]
    if foreign:
        raise RunExistsError(f"{out} already holds {_shown(foreign)}, which no earlier `m2s {command}` wrote (not "
                             f"listed in {OUTPUTS_MANIFEST}): nothing was changed; choose another --out folder")
    mine = [o for o in listed if (out / o).exists()]
    if mine and not overwrite:
        raise RunExistsError(f"{out} already holds the outputs of an earlier `m2s {command}` ({_shown(mine)}): pass "
                             "--overwrite to replace them (nothing else there is touched), or choose another --out")
    for name in mine:
        target = out / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    write_text(manifest, json.dumps({"command": command, "outputs": outputs}, indent=1) + "\n")
    return out


def _shown(names: list[str], k: int = 6) -> str:
    return ", ".join(names[:k]) + (f" and {len(names) - k} more" if len(names) > k else "")
