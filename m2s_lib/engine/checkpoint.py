"""Checkpoints: the training-checkpoint format, writing and reading it, rebuilding a model from one, and loading
any checkpoint (ours or the authors' released weights) into a ready model.

A training checkpoint (``last.pt`` / ``best.pt``) is a dict with ``format`` = :data:`CHECKPOINT_FORMAT`, the run's
``config`` (``Config.to_dict``), ``model``, ``optimizer``, ``scheduler``, ``scaler`` and ``rng`` states, ``epoch``,
``step`` and the metric ``history``: tensors and plain types only, so it is read with ``weights_only=True``. The
authors' key map and the file reader shared with encoder weights live in :mod:`m2s_lib.backbones`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..atomic import atomic_path
from ..backbones import (
    CheckpointMismatchError,
    load_official_checkpoint,
    load_state_dict_file,
    read_torch_file,
    state_dict_mismatch,
)
from ..config import Config
from ..data.labels import LABEL_TASKS
from ..model import build_model
from .runtime import select_device

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointMismatchError",
    "check_task",
    "is_training_checkpoint",
    "load_checkpoint",
    "load_model",
    "load_model_state",
    "model_from_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "m2s-checkpoint/1"


def save_checkpoint(obj: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``obj`` with ``torch.save`` atomically (a reader never sees half a file); creates the folder."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path


def is_training_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by the trainer (anything else raises ``CheckpointMismatchError``)."""
    path = Path(path)
    ckpt = read_torch_file(path, map_location=map_location, what="checkpoint")
    if not is_training_checkpoint(ckpt):
        raise CheckpointMismatchError(
            f"{str(path)!r} is not an m2s training checkpoint (no {CHECKPOINT_FORMAT!r} format entry). The authors' "
            "released weights load with `m2s evaluate --official ...` / m2s_lib.backbones.load_official_checkpoint"
        )
    return ckpt


def check_task(cfg: Config, task: str, source: str) -> None:
    """Refuse to score a checkpoint under a task of the other kind (``CheckpointMismatchError``): a binary (1-class)
    model under a label task (oct), or a model of 3+ classes under a binary task (polyp, covid, busi)."""
    classes = int(cfg.model.classes)
    if task in LABEL_TASKS and classes == 1:
        raise CheckpointMismatchError(
            f"{source} is a binary (1-class) model (task {cfg.data.task}), but task {task} (--task {task}) scores "
            f"label images of several classes: leave --task out, or give a checkpoint trained on {task} data")
    if task not in LABEL_TASKS and classes > 2:
        raise CheckpointMismatchError(
            f"{source} has {classes} classes (task {cfg.data.task}: label images), but task {task} (--task {task}) "
            f"scores binary masks: leave --task out, or give a binary checkpoint trained on {task} data")


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict load with a readable account of what does not fit."""
    lines = state_dict_mismatch(model.state_dict(), state, limit=8)
    if lines:
        raise CheckpointMismatchError(f"{source} does not fit the model: " + " | ".join(lines))
    model.load_state_dict(state, strict=True)


def _model_mismatch(expected: Config, found: Config) -> dict[str, tuple[Any, Any]]:
    return {k: v for k, v in found.diff(expected).items() if k.startswith("model.") and k != "model.encoder_weights"}


def model_from_checkpoint(
    checkpoint: str | os.PathLike | dict, device: str | torch.device = "cpu", expect: Config | None = None
) -> tuple[nn.Module, Config]:
    """Build the network a checkpoint was trained with and load its weights: ``(model in eval mode, config)``.

    ``expect``: a config whose ``model`` section the checkpoint must match (else ``CheckpointMismatchError``
    naming the differing settings, e.g. ``model.name: checkpoint 'msnet', expected 'm2snet'``).
    """
    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    source = "the checkpoint" if isinstance(checkpoint, dict) else f"checkpoint {str(checkpoint)!r}"
    cfg = Config.from_saved(ckpt["config"])
    if expect is not None:
        diff = _model_mismatch(expect, cfg)
        if diff:
            text = "; ".join(f"{k}: checkpoint {a!r}, expected {b!r}" for k, (a, b) in diff.items())
            raise CheckpointMismatchError(f"{source} holds another architecture — {text}")
    model = build_model(cfg.model.name, **cfg.model.build_kwargs(weights=False))
    load_model_state(model, ckpt["model"], source)
    return model.to(device).eval(), cfg


def load_model(
    checkpoint: str | os.PathLike,
    device: str | torch.device | None = None,
    model: str | None = None,
    encoder_name: str = "res2net50d",
    classes: int = 1,
) -> tuple[nn.Module, Config]:
    """A model in eval mode and its config from a checkpoint file.

    An m2s training checkpoint (``last.pt`` / ``best.pt``) rebuilds the architecture it was trained with; ``model``
    (``m2snet`` / ``msnet`` / ``fpn``), if given, must match it (else ``CheckpointMismatchError`` naming the
    difference). Any other file is read as the authors' released weights (``resnet.*``, ``x5_dem_1.*`` keys)
    for ``model`` (default ``m2snet``) with ``encoder_name`` — a file that does not fit raises
    ``CheckpointMismatchError`` listing the missing, unexpected and wrongly shaped keys.
    """
    device = select_device(device or "auto")
    path = Path(checkpoint).expanduser()
    obj = read_torch_file(path, what="checkpoint")
    if is_training_checkpoint(obj):
        expect = None
        if model is not None:
            expect = Config.from_saved(obj["config"])
            expect.set("model.name", model)
        return model_from_checkpoint(obj, device=device, expect=expect)
    # The authors' weights: a plain state dict.
    name = model or "m2snet"
    cfg = Config(profile="official")
    cfg.set("model.name", name)
    cfg.set("model.encoder_name", encoder_name)
    cfg.set("model.classes", classes)
    cfg.set("model.encoder_weights", None)
    net = build_model(name, **cfg.model.build_kwargs(weights=False))
    try:
        load_official_checkpoint(net, load_state_dict_file(path))
    except CheckpointMismatchError as err:
        raise CheckpointMismatchError(
            f"{path} is neither an m2s training checkpoint nor the authors' {name} weights: {err}"
        ) from err
    return net.to(device).eval(), cfg
