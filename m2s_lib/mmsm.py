"""Eq. 3: the multi-scale in multi-scale subtraction module (MMSM).

Notation of the paper (Fig. 2): ``MS_1^i`` is encoder level i reduced to 64 channels; ``MS_n^i`` (n ≥ 2) is the
unit that compares ``MS_{n-1}^{i+1}`` (coarser) with ``MS_{n-1}^i``, so it spans levels i … i+n−1. Each level's
complementarity-enhanced feature is ``CE^i = Conv(Σ_n MS_n^i)``.

Two wirings:

* ``"official"`` (the authors' code, default): ``CE^4 = MS_2^4`` with no conv, ``CE^i = CBR(Σ_{n≥2} MS_n^i)``
  for i = 1, 2, 3 — the level's own ``MS_1^i`` is left out of the sum.
* ``"paper"`` (Eq. 3 as printed): ``CE^i = CBR(Σ_{n≥1} MS_n^i)`` for i = 1 … 4, which adds ``MS_1^i`` and one
  more conv (for ``CE^4``).

In both, the order-5 unit's coarse input ``MS_4^2`` first passes an extra CBR (the authors' ``x5_dem_4``).
``CE^5`` is made by the decoder from the raw top encoder level (see ``m2s_lib.model``).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn

from .subtraction import (
    AdditionUnit,
    ConvBNReLU,
    MultiScaleSubtractionUnit,
    SubtractionUnit,
    make_filter_bank,
    validate_kernel_sizes,
)

__all__ = ["MMSM", "WIRINGS", "UNITS", "ms_key", "ce_key", "unit_name"]

WIRINGS = ("official", "paper")
UNITS = ("msu", "su", "au")
NUM_LEVELS = 5


def ms_key(n: int, i: int) -> str:
    """Feature name of ``MS_n^i`` (order n, level i), e.g. ``"MS_2^4"``."""
    return f"MS_{n}^{i}"


def ce_key(i: int) -> str:
    return f"CE^{i}"


def unit_name(n: int, i: int) -> str:
    """Module name of the unit producing ``MS_n^i`` (``"MS2_4"``; module names cannot hold ``^``)."""
    return f"MS{n}_{i}"


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is unknown: choose one of {tuple(choices)}")


class MMSM(nn.Module):
    """The pyramid of units over five levels of ``channels`` channels, producing ``CE^1 … CE^4`` (Eq. 3).

    Args:
        channels: width of every level (64 in the paper).
        unit: ``"msu"`` (M2SNet, Eq. 2), ``"su"`` (MSNet, Eq. 1) or ``"au"`` (addition ablation).
        wiring: ``"official"`` or ``"paper"`` (see the module docstring).
        kernel_sizes: MSU scales, default (1, 3, 5); ignored by SU/AU.
        msu_impl: ``"fast"`` or ``"dense"`` full-one filters (identical results).
        filter_weights: ``"ones"`` or ``"gaussian"`` (Table 11).
        share_filters: one filter per kernel size for all units (authors' code) or one per unit.
        max_order: highest order n of units built (Table 9's "+SU_2 … +MS_5"); 1 builds none (FPN baseline,
            paper wiring only).
    """

    def __init__(
        self,
        channels: int = 64,
        unit: str = "msu",
        wiring: str = "official",
        kernel_sizes: Sequence[int] = (1, 3, 5),
        msu_impl: str = "fast",
        filter_weights: str = "ones",
        share_filters: bool = True,
        max_order: int = NUM_LEVELS,
    ):
        super().__init__()
        _check_choice("unit", unit, UNITS)
        _check_choice("wiring", wiring, WIRINGS)
        if not 1 <= int(max_order) <= NUM_LEVELS:
            raise ValueError(f"max_order={max_order} must be between 1 and {NUM_LEVELS}")
        if wiring == "official" and max_order < 2:
            raise ValueError("wiring='official' sums only units of order ≥ 2: use max_order ≥ 2, or wiring='paper'")
        self.channels = channels
        self.unit_type = unit
        self.wiring = wiring
        self.max_order = int(max_order)
        self.kernel_sizes = validate_kernel_sizes(kernel_sizes)

        self.filters = None
        if unit == "msu" and share_filters and self.max_order >= 2:
            self.filters = make_filter_bank(channels, self.kernel_sizes, impl=msu_impl, weights=filter_weights)

        def make_unit() -> nn.Module:
            if unit == "su":
                return SubtractionUnit(channels)
            if unit == "au":
                return AdditionUnit(channels)
            return MultiScaleSubtractionUnit(
                channels, self.kernel_sizes, impl=msu_impl, weights=filter_weights, filters=self.filters
            )

        self.units = nn.ModuleDict(
            {unit_name(n, i): make_unit() for n in range(2, self.max_order + 1) for i in range(1, NUM_LEVELS + 2 - n)}
        )
        self.top_input = ConvBNReLU(channels, channels) if self.max_order == NUM_LEVELS else None
        fused_levels = (1, 2, 3, 4) if wiring == "paper" else (1, 2, 3)
        self.fuse = nn.ModuleDict({f"CE{i}": ConvBNReLU(channels, channels) for i in fused_levels})

    def orders(self, level: int) -> range:
        """Orders n summed into ``CE^level``."""
        first = 1 if self.wiring == "paper" else 2
        return range(first, min(NUM_LEVELS + 1 - level, self.max_order) + 1)

    def unit_inputs(self, features: Mapping[str, torch.Tensor], n: int, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The inputs ``(A, B)`` of unit ``MS_n^i`` among ``features``: ``A = MS_{n-1}^{i+1}`` (through
        ``top_input`` for n = 5, the authors' extra CBR) and ``B = MS_{n-1}^i``."""
        coarse = features[ms_key(n - 1, i + 1)]
        if n == NUM_LEVELS:
            coarse = self.top_input(coarse)
        return coarse, features[ms_key(n - 1, i)]

    def forward(self, levels: Sequence[torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        """``levels`` = [MS_1^1, …, MS_1^5] (finest first). Returns every ``MS_n^i`` and ``CE^1 … CE^4``."""
        if len(levels) != NUM_LEVELS:
            raise ValueError(f"MMSM expects {NUM_LEVELS} levels (finest first), got {len(levels)}")
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        for i, x in enumerate(levels, start=1):
            out[ms_key(1, i)] = x
        for n in range(2, self.max_order + 1):
            for i in range(NUM_LEVELS + 1 - n, 0, -1):
                out[ms_key(n, i)] = self.units[unit_name(n, i)](*self.unit_inputs(out, n, i))
        for i in range(4, 0, -1):
            terms = [out[ms_key(n, i)] for n in self.orders(i)]
            total = terms[0]
            for t in terms[1:]:
                total = total + t
            name = f"CE{i}"
            out[ce_key(i)] = self.fuse[name](total) if name in self.fuse else total
        return out
