"""One training step, the unit that notebook 06 writes by hand and checks against.

What happens *outside* the step: the data pipeline (augmentation in the dataset, the multi-scale size of the batch
in :class:`m2s_lib.data.folders.MultiScaleCollate`), moving the batch to the device, and the learning rate: the
optimiser's groups already hold ``base_lr × lr_factor`` (``LambdaLR``), and a per-epoch schedule is stepped by the
caller at the end of the epoch. Inside: forward (under autocast when ``amp``), loss, backward, optional gradient
clipping, the optimiser update and, for a per-step schedule, ``scheduler.step()``.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

__all__ = ["NonFiniteLossError", "train_step"]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step, the batch's files and the last checkpoint."""


def train_step(
    model: nn.Module,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor | dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    masks: torch.Tensor,
    *,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    grad_clip: float = 0.0,
    amp: bool = False,
    amp_dtype: torch.dtype = torch.float16,
    check_loss: Callable[[torch.Tensor], None] | None = None,
) -> dict[str, torch.Tensor]:
    """One optimiser step on one batch; returns the loss and its parts, detached.

    Args:
        model: the network in train mode (``logits = model(images)``).
        criterion: ``criterion(logits, masks)``: a loss tensor, or a dict with ``"loss"`` and its parts (as
            :class:`m2s_lib.losses.M2SNetLoss` returns: ``loss``, ``structure``, ``lossnet``).
        optimizer: its groups' ``lr`` are used as they are (the schedule has set them).
        images, masks: the batch, already on the model's device and at this step's size.
        scheduler: stepped once after the update (per-step schedules only; leave it ``None`` for per-epoch ones).
        scaler: AMP ``GradScaler`` (``None``: a plain ``backward`` and ``optimizer.step``, which is what a disabled
            scaler does).
        grad_clip: clip the gradients' global norm to this value (0: no clipping).
        amp, amp_dtype: autocast the forward pass and the loss.
        check_loss: called with the loss before the backward pass (the trainer stops there on a non-finite loss).

    Every random draw happens in the data pipeline, so two callers with the same seed, weights and batch get the
    same loss and the same weights after the step.
    """
    with torch.autocast(images.device.type, dtype=amp_dtype, enabled=amp):
        logits = model(images)
        out = criterion(logits, masks)
    parts = out if isinstance(out, dict) else {"loss": out}
    loss = parts["loss"]
    if check_loss is not None:
        check_loss(loss)
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
    else:
        scaler.scale(loss).backward()
    if grad_clip > 0:
        if scaler is not None:
            scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
    if scheduler is not None:
        scheduler.step()
    return {k: v.detach() for k, v in parts.items()}
