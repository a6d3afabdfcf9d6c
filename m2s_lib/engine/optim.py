"""The paper's optimiser and learning-rate schedule.

SGD (momentum 0.9, weight decay 5e-4, Nesterov as in the authors' script) with two parameter groups: the encoder at
``encoder_lr`` (0.005) and everything else at ``lr`` (0.05) — the paper's setting, which the authors' script misses
(its group filter matches nothing, so their encoder trains at 0.05). Warm-up and linear decay with the authors'
triangle ``lr · (1 − |2(e+1)/(E+1) − 1|)`` per epoch ``e`` of ``E``, or the same triangle per optimiser step
(``optim.schedule_unit=step``).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from ..config import Config

__all__ = ["ConstantSchedule", "TriangularSchedule", "build_optimizer", "build_scheduler", "lr_factor"]


def lr_factor(index: int, total: int, peak: float = 0.5) -> float:
    """The authors' triangle ``1 − |2(i+1)/(T+1) − 1|`` for period ``i`` of ``T`` (0-based; never below 0).

    ``peak`` moves the top of the triangle to the fraction ``x = (i+1)/(T+1) = peak`` of the run (rising ``x/peak``,
    then falling ``(1−x)/(1−peak)``); the default 0.5 is the authors' formula exactly.
    """
    x = (index + 1) / (total + 1)
    if peak == 0.5:
        return max(0.0, 1.0 - abs(2.0 * x - 1.0))
    return max(0.0, min(x / peak, (1.0 - x) / (1.0 - peak)))


class TriangularSchedule:
    """Picklable multiplier for ``LambdaLR``: ``lr_factor(k, total, peak)`` (``total`` epochs or optimiser steps)."""

    def __init__(self, total: int, peak: float = 0.5):
        self.total = int(total)
        self.peak = float(peak)

    def __call__(self, k: int) -> float:
        return lr_factor(k, self.total, self.peak)


class ConstantSchedule:
    def __call__(self, k: int) -> float:
        return 1.0


def build_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """SGD (or AdamW) with group 0 = the encoder (``encoder_lr``) and group 1 = everything else (``lr``)."""
    model = model.module if isinstance(model, DistributedDataParallel) else model
    encoder = getattr(model, "encoder", None)
    enc_ids = {id(p) for p in encoder.parameters()} if encoder is not None else set()
    enc = [p for p in model.parameters() if id(p) in enc_ids and p.requires_grad]
    head = [p for p in model.parameters() if id(p) not in enc_ids and p.requires_grad]
    o = cfg.optim
    groups = [
        {"params": enc, "lr": o.encoder_lr, "name": "encoder"},
        {"params": head, "lr": o.lr, "name": "head"},
    ]
    if o.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
                           nesterov=o.nesterov and o.momentum > 0)  # fmt: skip


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Config, steps_per_epoch: int):
    """``LambdaLR`` with the triangle over epochs (stepped once per epoch) or over all steps (once per step)."""
    o = cfg.optim
    if o.schedule == "constant":
        fn: Callable[[int], float] = ConstantSchedule()
    else:
        total = o.epochs if o.schedule_unit == "epoch" else o.epochs * max(1, steps_per_epoch)
        fn = TriangularSchedule(total, o.warmup_fraction)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=[fn, fn])
