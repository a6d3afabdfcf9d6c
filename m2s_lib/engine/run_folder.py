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
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..backbones import CheckpointMismatchError
from ..config import Config
from .checkpoint import load_checkpoint

__all__ = ["DiskFullError", "OUTPUTS_MANIFEST", "PATH_KEYS", "RESUME_MAY_CHANGE", "RUN_FILES", "RunExistsError",
           "absolute_paths", "checkpoint_in", "no_space_message", "open_run_folder", "out_of_space",
           "prepare_output_dir", "remove_stale_temporaries"]

RUN_FILES = ("last.pt", "best.pt", "metrics.csv", "config.yaml")
OUTPUTS_MANIFEST = "m2s_outputs.json"  # what an evaluate / predict run wrote (prepare_output_dir)
# Settings a resumed run may change; anything else must match the checkpoint's config.
RESUME_MAY_CHANGE = ("run.", "optim.epochs", "optim.grad_clip", "data.num_workers", "data.root", "data.val_root",
                     "data.synthetic_dir")


class RunExistsError(RuntimeError):
    """The output folder already holds a run and neither ``resume`` nor ``overwrite`` was asked for."""


def _resume_checkpoint(out: Path, cfg: Config, is_main: bool, log: Callable[[str], None]) -> dict[str, Any] | None:
    last = out / "last.pt"
    if not last.is_file():
        return _resume_without_checkpoint(out, is_main, log)
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
    done = int(ckpt.get("epoch", 0))
    if cfg.optim.epochs < done:
        raise ValueError(
            f"cannot resume {out} with --epochs {cfg.optim.epochs} (optim.epochs): the run has already done {done} "
            f"epochs. Pass --epochs {done} or more (or leave --epochs out to keep {saved.optim.epochs}); nothing "
            "was changed"
        )
    if saved.optim.epochs != cfg.optim.epochs and is_main:
        log(f"note: epochs changed from {saved.optim.epochs} to {cfg.optim.epochs}; the learning-rate "
            "triangle is recomputed for the new length")  # fmt: skip
    return ckpt


def _resume_without_checkpoint(out: Path, is_main: bool, log: Callable[[str], None]) -> None:
    """``--resume`` of a run that saved no epoch (stopped in its first epoch: Ctrl-C, a non-finite loss, a full
    disk): it starts from epoch 1 with the settings asked for (by default its ``config.yaml``'s)."""
    if not (out / "config.yaml").is_file():
        raise FileNotFoundError(f"nothing to resume in {out}: it holds no run (no last.pt, no config.yaml)")
    stray = [f for f in ("best.pt", "metrics.csv") if (out / f).exists()]
    if stray:
        raise FileNotFoundError(f"cannot resume {out}: it holds {', '.join(stray)} but no last.pt (the training "
                                "state): pass --overwrite to start again, or choose another --out folder")
    if is_main:
        log(f"note: {out} holds no last.pt (the run saved no epoch): starting it from epoch 1")
    return None


def remove_stale_temporaries(out: Path, log: Callable[[str], None]) -> list[Path]:
    """Delete the hidden temporary files that an interrupted atomic write of a run file left in ``out``
    (``.last.pt.*.tmp`` after a SIGKILL while saving). Call it holding the folder's lock."""
    stale = sorted(p for f in RUN_FILES for p in out.glob(f".{f}.*.tmp") if p.is_file())
    for p in stale:
        p.unlink(missing_ok=True)
    if stale:
        log(f"note: removed {len(stale)} temporary file(s) left by an interrupted write in {out} "
            f"({', '.join(p.name for p in stale[:3])})")
    return stale


def open_run_folder(out: Path | None, cfg: Config, *, resume: bool, overwrite: bool, is_main: bool,
                    log: Callable[[str], None]) -> dict[str, Any] | None:
    """Check ``out`` before a run starts (the caller holds the folder's lock). ``resume``: the checkpoint to continue
    from (``last.pt``, whose settings must match ``cfg`` except :data:`RESUME_MAY_CHANGE`; ``None`` for a run that
    saved no epoch, which starts again). Otherwise ``None``, after refusing a folder that holds a run
    (:class:`RunExistsError`) unless ``overwrite``, which deletes that run's files (rank 0 only)."""
    if out is not None and out.is_dir() and is_main:
        remove_stale_temporaries(out, log)
    if resume:
        if out is None:
            raise ValueError("resume needs an output folder (out=... / --out)")
        return _resume_checkpoint(out, cfg, is_main, log)
    if out is not None and out.exists():
        present = [f for f in RUN_FILES if (out / f).exists()]
        if present == ["config.yaml"] and not overwrite:
            raise RunExistsError(
                f"{out} holds the settings of a run that saved no epoch (config.yaml): pass --resume to start it "
                "with those settings (KEY=VALUE overrides may change them), --overwrite to start afresh with "
                "these, or choose another --out folder"
            )
        if present and not overwrite:
            raise RunExistsError(
                f"{out} already holds a run ({', '.join(present)}): pass --resume to continue it, "
                "--overwrite to delete those files and start again, or choose another --out folder"
            )
        if present and is_main:
            for f in present:
                (out / f).unlink()
    return None


class DiskFullError(RuntimeError):
    """A run file could not be written for lack of space (the message says how much and how to continue)."""


#: Path settings stored absolute in a run (its config.yaml and checkpoints), so that a resume works from anywhere.
PATH_KEYS = ("data.root", "data.val_root")  # (a relative data.synthetic_dir lies under the repository root)


def absolute_paths(cfg: Config) -> Config:
    """``cfg`` with its :data:`PATH_KEYS` made absolute."""
    changes = {k: str(Path(v).expanduser().resolve()) for k in PATH_KEYS if (v := cfg.get(k)) not in (None, "")}
    return cfg.override({k: v for k, v in changes.items() if v != cfg.get(k)}) if changes else cfg


def out_of_space(err: BaseException) -> bool:
    """Whether a failed write ran out of space (``torch.save`` reports it as an ``inline_container`` failure)."""
    import errno

    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and any(
        w in text for w in ("inline_container", "unexpected pos", "No space left", "file write failed"))


def no_space_message(path: Path, out: Path | None, checkpoint_mb: float) -> str:
    """One line for a write of ``path`` (a run file in ``out``) that ran out of space: how much is free and needed,
    and the command that continues the run once there is room."""
    import shutil

    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MB free"
    except OSError:
        free = "free space unknown"
    then = ("continues from the last saved epoch" if out is not None and (out / "last.pt").is_file()
            else "starts the run again from its config.yaml")  # fmt: skip
    return (f"no space left on the disk of {path.parent} while writing {path.name} ({free}; a checkpoint of this "
            f"model takes about {checkpoint_mb:.0f} MB): free some space, then `m2s train --out {out} --resume` "
            f"({then})")


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


def checkpoint_in(path: str | os.PathLike, log: Callable[[str], None] = print) -> Path:
    """The checkpoint file that ``--checkpoint PATH`` means: ``PATH`` itself, or for a run folder its ``best.pt``
    (else ``last.pt``), said in one line; a folder holding neither is refused, naming what to pass."""
    path = Path(path).expanduser()
    if not path.is_dir():
        return path
    for name in ("best.pt", "last.pt"):
        if (path / name).is_file():
            log(f"using {path / name} (the run folder's {name})")
            return path / name
    raise FileNotFoundError(f"--checkpoint {path} is a folder that holds no best.pt or last.pt: pass a checkpoint "
                            "file (a run's best.pt / last.pt, or the authors' .pth)")
