"""Subtraction units of M2SNet: Eq. 1 (SU), Eq. 2 (MSU) and the addition ablation (AU).

All units take two feature maps of the same channel count: ``a`` from the coarser (higher) level and ``b`` from
the finer one. ``a`` is bilinearly up-sampled to ``b``'s size, the two are compared, and a 3×3 conv + BN + ReLU
(``ConvBNReLU``) turns the comparison into the unit's output, as in the authors' code.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "ConvBNReLU",
    "upsample_like",
    "FullOneFilter",
    "SubtractionUnit",
    "AdditionUnit",
    "MultiScaleSubtractionUnit",
    "make_filter_bank",
    "validate_kernel_sizes",
    "FILTER_IMPLS",
    "FILTER_WEIGHTS",
]

FILTER_IMPLS = ("fast", "dense")
FILTER_WEIGHTS = ("ones", "gaussian")


class ConvBNReLU(nn.Sequential):
    """3×3 convolution + BatchNorm + ReLU (the authors' ``nn.Sequential(Conv2d, BatchNorm2d, ReLU)``).

    Being a ``Sequential`` keeps the authors' state-dict sub-keys (``0.weight``, ``1.running_mean`` ...).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


def upsample_like(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``x`` to ``ref``'s spatial size (``align_corners=False``, as ``F.upsample`` did)."""
    if x.shape[-2:] == ref.shape[-2:]:
        return x
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


def validate_kernel_sizes(kernel_sizes: Iterable[int]) -> tuple[int, ...]:
    """Return ``kernel_sizes`` as a sorted tuple, or raise a clear error for even / non-positive / repeated sizes."""
    try:
        sizes = tuple(int(k) for k in kernel_sizes)
    except TypeError as err:
        raise ValueError(f"kernel_sizes must be a sequence of odd integers such as (1, 3, 5), got {kernel_sizes!r}") from err
    if not sizes:
        raise ValueError("kernel_sizes is empty: give at least one odd size, e.g. (1,) for a single-scale unit")
    for k in sizes:
        if k < 1 or k % 2 == 0:
            raise ValueError(
                f"kernel size {k} in kernel_sizes={sizes} is not allowed: full-one filters need odd sizes "
                "(1, 3, 5, 7, ...) so that the output keeps the input's size"
            )
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"kernel_sizes={sizes} repeats a size; each scale may appear once")
    return tuple(sorted(sizes))


class FullOneFilter(nn.Module):
    """``Filter(·)_{k×k}`` of Eq. 2: a fixed (never trained) k×k convolution, then BatchNorm and ReLU.

    ``weights="ones"`` is the paper's full-one kernel, a C×C×k×k tensor of ones. Every output channel of that
    convolution equals the k×k box sum of the *channel sum* of the input, so ``impl="fast"`` computes
    ``box_sum_k(x.sum(1))`` once and broadcasts it to the C channels: identical numbers for C + k² instead of
    C²k² multiply-adds per pixel. ``impl="dense"`` is the literal convolution with the kernel as a registered
    buffer, for teaching and for checking the fast form.

    ``weights="gaussian"`` is the Table 11 ablation: the ones are replaced by fixed weights drawn from a standard
    normal distribution (seeded, so reproducible). Such a kernel has no shortcut, so it needs ``impl="dense"``.

    The kernel is not saved in the state dict (``persistent=False``): like the authors' checkpoints, only the
    BatchNorm has keys (``norm.weight``, ``norm.bias``, ``norm.running_mean`` ...).
    """

    def __init__(self, channels: int, kernel_size: int, impl: str = "fast", weights: str = "ones", seed: int = 0):
        super().__init__()
        if impl not in FILTER_IMPLS:
            raise ValueError(f"impl={impl!r} is unknown: choose one of {FILTER_IMPLS}")
        if weights not in FILTER_WEIGHTS:
            raise ValueError(f"weights={weights!r} is unknown: choose one of {FILTER_WEIGHTS}")
        (kernel_size,) = validate_kernel_sizes([kernel_size])
        if weights == "gaussian" and impl == "fast":
            raise ValueError(
                "weights='gaussian' has no fast form (only an all-ones kernel reduces to a box sum of the channel "
                "sum): use impl='dense' (msu_impl='dense' in the model)"
            )
        self.channels = channels
        self.kernel_size = kernel_size
        self.impl = impl
        self.weights = weights
        if impl == "dense":
            if weights == "ones":
                kernel = torch.ones(channels, channels, kernel_size, kernel_size)
            else:
                generator = torch.Generator().manual_seed(seed + kernel_size)
                kernel = torch.randn(channels, channels, kernel_size, kernel_size, generator=generator)
            self.register_buffer("kernel", kernel, persistent=False)
        self.norm = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def filter(self, x: torch.Tensor) -> torch.Tensor:
        """The fixed convolution alone (before BatchNorm and ReLU)."""
        pad = self.kernel_size // 2
        if self.impl == "dense":
            return F.conv2d(x, self.kernel.to(x.dtype), padding=pad)
        channel_sum = x.sum(dim=1, keepdim=True)
        box = F.avg_pool2d(channel_sum, self.kernel_size, stride=1, padding=pad, count_include_pad=True)
        box = box * float(self.kernel_size**2)
        return box.expand(-1, x.shape[1], -1, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.norm(self.filter(x)))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, kernel_size={self.kernel_size}, impl={self.impl!r}, weights={self.weights!r}"


def make_filter_bank(
    channels: int, kernel_sizes: Sequence[int], impl: str = "fast", weights: str = "ones"
) -> nn.ModuleDict:
    """One ``FullOneFilter`` per kernel size > 1, keyed by the size as a string (``"3"``, ``"5"`` ...).

    Size 1 needs no module: as in the authors' code, the 1×1 term of Eq. 2 is the plain difference ``|A − B|``.
    """
    sizes = validate_kernel_sizes(kernel_sizes)
    return nn.ModuleDict({str(k): FullOneFilter(channels, k, impl=impl, weights=weights) for k in sizes if k > 1})


class SubtractionUnit(nn.Module):
    """SU, Eq. 1: ``CBR(|up(A) − B|)``. MSNet uses it everywhere."""

    def __init__(self, channels: int = 64):
        super().__init__()
        self.conv = ConvBNReLU(channels, channels)

    def combine(self, a_up: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.abs(a_up - b)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.conv(self.combine(upsample_like(a, b), b))


class AdditionUnit(SubtractionUnit):
    """AU, the Table 9 ablation: ``CBR(up(A) + B)``, same parameters as SU, addition instead of subtraction."""

    def combine(self, a_up: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a_up + b


class MultiScaleSubtractionUnit(SubtractionUnit):
    """MSU, Eq. 2: ``CBR(Σ_k |F_k(up A) − F_k(B)|)`` over ``kernel_sizes`` (default 1, 3, 5).

    ``F_1`` is the identity (authors' code), ``F_k`` for k > 1 a ``FullOneFilter``. Pass ``filters`` (a mapping
    ``"k" -> FullOneFilter``) to use filters owned elsewhere: the MMSM shares one ``F_3`` and one ``F_5`` across
    all ten units, as the authors do. Shared filters are not registered here, so they appear once in the
    state dict, under their owner.
    """

    def __init__(
        self,
        channels: int = 64,
        kernel_sizes: Sequence[int] = (1, 3, 5),
        impl: str = "fast",
        weights: str = "ones",
        filters: Mapping[str, nn.Module] | None = None,
    ):
        super().__init__(channels)
        self.kernel_sizes = validate_kernel_sizes(kernel_sizes)
        if filters is None:
            self.filters = make_filter_bank(channels, self.kernel_sizes, impl=impl, weights=weights)
            self._shared_filters = None
        else:
            missing = [str(k) for k in self.kernel_sizes if k > 1 and str(k) not in filters]
            if missing:
                raise ValueError(f"shared filters lack kernel sizes {missing}; they have {sorted(filters)}")
            self.filters = None
            self._shared_filters = [filters]  # a list hides the shared modules from registration

    def filter_bank(self) -> Mapping[str, nn.Module]:
        return self.filters if self.filters is not None else self._shared_filters[0]

    def scale_terms(self, a_up: torch.Tensor, b: torch.Tensor) -> dict[int, torch.Tensor]:
        """The terms ``|F_k(up A) − F_k(B)|`` of Eq. 2, one per kernel size (for plotting and teaching)."""
        bank = self.filter_bank()
        terms = {}
        for k in self.kernel_sizes:
            if k == 1:
                terms[k] = torch.abs(a_up - b)
            else:
                f = bank[str(k)]
                terms[k] = torch.abs(f(a_up) - f(b))
        return terms

    def combine(self, a_up: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        terms = iter(self.scale_terms(a_up, b).values())
        total = next(terms)
        for term in terms:
            total = total + term
        return total
