"""The early-training probe of an ablation run: per-step loss, and at chosen steps what the network does.

At each probe step (0 = before the first update) a fixed batch of test images goes through the network twice:

* ``eval``: BatchNorm uses its running statistics, as at test time;
* ``batch``: BatchNorm uses the batch's own statistics, as during training (momenta set to 0 for this pass, so
  the running statistics are left untouched).

For each pass the probe records the Dice of ``p > 0.5`` and, for every subtraction unit, the mean magnitude of
each scale term of Eq. 2 ``|F_k(up A) − F_k(B)|`` (``k = 1`` is the pixel-wise ``|up A − B|``; MSNet only has it),
averaged over the ten units. Comparing the two passes separates *what the network has learned* (``batch``) from
*how well the BatchNorm running statistics describe it* (``eval``): in M2SNet one ``F_3`` and one ``F_5``, each
with a single BatchNorm, serve all ten units (20 calls per forward pass on inputs of very different scales), so
their running statistics follow a mixture of levels and fit none of them.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import pandas as pd
import torch
import torch.nn as nn

from ..metrics import DICE_SMOOTH, binarize_prob

__all__ = ["EarlyProbe", "probe_model", "frozen_batchnorm_stats"]


@contextmanager
def frozen_batchnorm_stats(model: nn.Module):
    """Within the block, BatchNorm layers in training mode use batch statistics but do not update their running
    ones (momentum 0). Momenta and ``num_batches_tracked`` are restored afterwards."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None)
             for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def _dice05(prob: torch.Tensor, mask: torch.Tensor) -> float:
    pred = binarize_prob(prob).float()
    inter = (pred * mask).sum(dim=(1, 2, 3))
    total = pred.sum(dim=(1, 2, 3)) + mask.sum(dim=(1, 2, 3))
    return float(((2 * inter + DICE_SMOOTH) / (total + DICE_SMOOTH)).mean())


@torch.no_grad()
def probe_model(model: nn.Module, images: torch.Tensor, masks: torch.Tensor) -> dict[str, float]:
    """``dice_<mode>`` and ``term<k>_<mode>`` (mean |scale term| over the subtraction units) for both passes."""
    from ..subtraction import AdditionUnit, MultiScaleSubtractionUnit, SubtractionUnit, upsample_like

    units = [m for m in model.modules() if isinstance(m, SubtractionUnit) and not isinstance(m, AdditionUnit)]
    captured: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []
    hooks = [u.register_forward_pre_hook(lambda mod, args: captured.append((mod, args[0], args[1]))) for u in units]
    was_training = model.training
    out: dict[str, float] = {}
    try:
        with frozen_batchnorm_stats(model):
            for mode in ("eval", "batch"):
                model.train(mode == "batch")
                captured.clear()
                out[f"dice_{mode}"] = _dice05(torch.sigmoid(model(images)), masks)
                sums: dict[int, list[float]] = {}
                for unit, a, b in captured:
                    a_up = upsample_like(a, b)
                    terms = (unit.scale_terms(a_up, b) if isinstance(unit, MultiScaleSubtractionUnit)
                             else {1: torch.abs(a_up - b)})
                    for k, t in terms.items():
                        sums.setdefault(k, []).append(float(t.abs().mean()))
                for k, values in sums.items():
                    out[f"term{k}_{mode}"] = sum(values) / len(values)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return out


class EarlyProbe:
    """Trainer callback: the loss of every step, and :func:`probe_model` at ``steps`` on ``n_images`` test images
    (the first images of each test set, at the evaluation size)."""

    def __init__(self, steps=(0, 5, 10, 20, 50, 100, 200, 300), n_images: int = 20):
        self.steps = {int(s) for s in steps}
        self.n_images = int(n_images)
        self.rows: list[dict[str, float]] = []
        self.batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def _probe_batch(self, trainer) -> tuple[torch.Tensor, torch.Tensor] | None:
        from ..data.folders import SegmentationFolder
        from ..data.layout import find_test_sets

        if trainer.data_root is None or self.n_images <= 0:
            return None
        sets = list(find_test_sets(trainer.data_root).values())
        if not sets:
            return None
        per_set = math.ceil(self.n_images / len(sets))
        items = []
        for folder in sets:
            ds = SegmentationFolder(folder, size=trainer.config.data.eval_size, train=False)
            items += [ds[i] for i in range(min(per_set, len(ds)))]
        items = items[: self.n_images]
        images = torch.stack([it["image"] for it in items]).to(trainer.device)
        masks = torch.stack([it["mask"] for it in items]).to(trainer.device)
        return images, masks

    def _record(self, trainer, step: int, loss: float) -> None:
        row: dict[str, float] = {"step": step, "loss": loss}
        if step in self.steps and self.batch is not None:
            row.update(probe_model(trainer.model, *self.batch))
        self.rows.append(row)

    def on_train_begin(self, trainer) -> None:
        state = torch.get_rng_state()  # building the batch must not change the paired run's random draws
        self.batch = self._probe_batch(trainer)
        torch.set_rng_state(state)
        self._record(trainer, 0, math.nan)

    def on_step_end(self, trainer, info: dict) -> None:
        self._record(trainer, int(info["global_step"]), float(info["loss"]))

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)
