"""The drawing basics every teaching figure uses: a ``Figure`` that shows itself in notebooks, PNG rendering and
display, atomic saving, and small converters (``denormalize``, ``overlay``, ``reduce_map``, ``feature_title``).

The figures themselves are in :mod:`m2s_lib.teaching.viz`.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib.figure
import numpy as np
import torch
from matplotlib import colors as mcolors

from ..atomic import atomic_path
from ..constants import IMAGENET_MEAN, IMAGENET_STD
from ..engine.predict import overlay as blend_overlay
from ..metrics import binarize_mask
from ..mmsm import NUM_LEVELS, ce_key, ms_key

__all__ = ["REDUCE_MODES", "Figure", "denormalize", "feature_auc", "feature_title", "figure_png", "map_auc", "overlay",
           "plot_feature_auc", "reduce_map", "save_figure", "show_figure"]

REDUCE_MODES = ("mean", "max", "channel", "pca")


class Figure(matplotlib.figure.Figure):
    """A matplotlib ``Figure`` that shows itself as a PNG in notebooks whatever the backend.

    Figures made here are not registered with ``pyplot`` (no global state, nothing shown twice). Jupyter's inline
    backend displays them anyway; under ``MPLBACKEND=Agg`` (as in ``make test`` and papermill runs) IPython would
    print only ``<Figure size ...>`` for a figure at the end of a cell — ``_repr_png_`` makes it an image output.
    """

    def _repr_png_(self) -> bytes:
        return figure_png(self)


def figure_png(fig: matplotlib.figure.Figure, dpi: int = 100, tight: bool = False) -> bytes:
    """The figure rendered as PNG bytes (``tight``: crop to the drawn area)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    return buffer.getvalue()


def show_figure(fig: matplotlib.figure.Figure, dpi: int = 110, close: bool = True) -> bytes:
    """Display ``fig`` as one PNG output in a notebook whatever the backend (``Agg`` headless included: there a bare
    figure would print only its repr), then close it so it is not drawn twice. Outside IPython it only renders.
    Returns the PNG bytes."""
    png = figure_png(fig, dpi, tight=True)
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:  # plain Python without IPython: nothing to draw on
        return png
    if get_ipython() is not None:
        display(Image(data=png, format="png"))
    return png


# ----------------------------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------------------------
def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def _pick(x, index: int = 0, ndim: int = 3):
    """Drop a leading batch dimension (taking sample ``index``) so that ``x`` has ``ndim`` dimensions."""
    while x.ndim > ndim:
        x = x[index] if x.shape[0] > index else x[0]
        index = 0
    return x


def feature_title(name: str) -> str:
    """Math-text title of a feature name: ``"MS_2^3"`` → ``$MS_{2}^{3}$``, ``"CE^4"`` → ``$CE^{4}$``."""
    if name.startswith("MS_") and "^" in name:
        n, i = name[3:].split("^")
        return rf"$MS_{{{n}}}^{{{i}}}$"
    if name.startswith("CE^"):
        return rf"$CE^{{{name[3:]}}}$"
    if len(name) == 2 and name[0] in "DE" and name[1].isdigit():
        return rf"${name[0]}_{{{name[1]}}}$"
    return name


def denormalize(image, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                as_uint8: bool = False, index: int = 0) -> np.ndarray:
    """An ImageNet-normalised image tensor (3×H×W, or N×3×H×W: sample ``index``) → H×W×3 array for display.

    Returns floats in [0, 1] (or uint8 0–255 with ``as_uint8=True``). One-channel images are repeated to RGB.
    A NumPy H×W×3 / H×W array is taken as already displayable: it is only scaled (uint8 → [0, 1]) and clipped.
    Pass ``mean=(0, 0, 0), std=(1, 1, 1)`` for tensors that are not normalised.
    """
    if isinstance(image, torch.Tensor):
        x = _pick(image.detach().float().cpu(), index, 3)
        if x.ndim == 2:
            x = x[None]
        c = x.shape[0]
        m = torch.tensor(mean[:c] if c <= len(mean) else mean[:1] * c, dtype=x.dtype).view(-1, 1, 1)
        s = torch.tensor(std[:c] if c <= len(std) else std[:1] * c, dtype=x.dtype).view(-1, 1, 1)
        if c == 1:
            m, s = m[:1], s[:1]
        rgb = (x * s + m).permute(1, 2, 0).numpy()
    else:
        rgb = np.asarray(image)
        if rgb.dtype == np.uint8:
            rgb = rgb.astype(np.float32) / 255.0
        rgb = rgb.astype(np.float32)
        if rgb.ndim == 3 and rgb.shape[0] in (1, 3) and rgb.shape[-1] not in (1, 3):
            rgb = rgb.transpose(1, 2, 0)  # C×H×W array
    if rgb.ndim == 2:
        rgb = rgb[..., None]
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    rgb = np.clip(rgb, 0.0, 1.0).astype(np.float32)
    return (rgb * 255).round().astype(np.uint8) if as_uint8 else rgb


def _mask2d(mask, index: int = 0) -> np.ndarray:
    """A mask / probability map in any common layout (H×W, 1×H×W, N×1×H×W, tensor or array) → H×W float."""
    m = _to_numpy(mask).astype(np.float32)
    while m.ndim > 2:
        m = m[index] if m.shape[0] > 1 else m[0]
        index = 0
    return m


def _as_probability(pred, from_logits: bool | None) -> np.ndarray:
    p = _to_numpy(pred).astype(np.float32)
    if from_logits is None:
        from_logits = bool(p.size) and (np.nanmin(p) < 0 or np.nanmax(p) > 1)
    return 1.0 / (1.0 + np.exp(-np.clip(p, -60.0, 60.0))) if from_logits else p


def overlay(image, mask, color="red", alpha: float = 0.45, index: int = 0) -> np.ndarray:
    """The image with ``mask`` painted over it in ``color``: an H×W×3 float array in [0, 1].

    ``image``: normalised tensor (see ``denormalize``) or an RGB/gray array; ``mask``: binary or soft map in
    [0, 1] of the same size (a soft map blends proportionally, so probability maps and Grad-CAM maps work too).
    ``color``: any matplotlib colour (name, hex, RGB tuple). The blend is :func:`m2s_lib.engine.predict.overlay`'s.
    """
    rgb = denormalize(image, index=index)
    m = np.clip(_mask2d(mask, index), 0.0, 1.0)
    if m.shape != rgb.shape[:2]:
        raise ValueError(f"mask of size {m.shape} does not match the image of size {rgb.shape[:2]}")
    return blend_overlay(rgb, m, mcolors.to_rgb(color), alpha, outline=0)


def reduce_map(tensor, mode: str = "mean", channel: int = 0, index: int = 0) -> np.ndarray:
    """One feature map C×H×W (or N×C×H×W: sample ``index``; or H×W) → an H×W array to show as an image.

    ``mode``: ``"mean"`` (channel mean), ``"max"`` (channel maximum), ``"channel"`` (channel ``channel``) or
    ``"pca"`` (projection on the first principal component of the C-dimensional pixel vectors; its sign is
    chosen so that the map correlates positively with the channel mean, so colours are comparable across maps).
    """
    if mode not in REDUCE_MODES:
        raise ValueError(f"mode={mode!r} is unknown: choose one of {REDUCE_MODES}")
    x = tensor.detach().float().cpu() if isinstance(tensor, torch.Tensor) else torch.as_tensor(np.asarray(tensor), dtype=torch.float32)
    x = _pick(x, index, 3)
    if x.ndim == 2:
        return x.numpy()
    c, h, w = x.shape
    if mode == "mean":
        out = x.mean(0)
    elif mode == "max":
        out = x.amax(0)
    elif mode == "channel":
        if not -c <= int(channel) < c:
            raise ValueError(f"channel={channel} is out of range for a map with {c} channels")
        out = x[int(channel)]
    else:
        pixels = x.reshape(c, -1).T.double()  # (HW, C)
        centred = pixels - pixels.mean(0, keepdim=True)
        if c == 1 or not torch.isfinite(centred).all() or float(centred.abs().max()) == 0.0:
            out = x.mean(0)
        else:
            _, _, v = torch.linalg.svd(centred, full_matrices=False)
            proj = centred @ v[0]
            mean_map = pixels.mean(1)
            if torch.dot(proj, mean_map - mean_map.mean()) < 0:
                proj = -proj
            out = proj.float().reshape(h, w)
    return out.numpy()


# ---------------------------------------------------------------------------------------------------------------
# How well a feature map localises the target (notebook 08)
# ---------------------------------------------------------------------------------------------------------------
def map_auc(score, target) -> float:
    """ROC AUC of a score map against a binary mask of the same size: the chance that a random target pixel scores
    higher than a random background pixel (the Mann-Whitney U statistic; ties count one half). 0.5: no information,
    1: a perfect detector, 0: a perfect detector of the background. NaN when the mask is empty or full."""
    from scipy.stats import rankdata

    positive = binarize_mask(np.asarray(target)).ravel()
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(score, dtype=np.float64).ravel())
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def feature_auc(features, masks: torch.Tensor, reduce: str = "mean") -> dict[str, float]:
    """``{MS_n^i or CE^i: mean AUC}``: every map of ``features`` (``forward_features``), reduced over its channels
    (:func:`reduce_map`), upsampled to the masks' size and scored as a polyp detector (:func:`map_auc`), averaged
    over the images (N×1×H×W ``masks``) whose mask is not empty."""
    names = [ms_key(n, i) for i in range(1, NUM_LEVELS + 1) for n in range(1, NUM_LEVELS + 2 - i)]
    names += [ce_key(i) for i in range(1, NUM_LEVELS + 1)]
    scores = {}
    for name in (n for n in names if n in features):
        values = []
        for k in range(len(masks)):
            if masks[k].sum() == 0:
                continue
            reduced = torch.from_numpy(reduce_map(features[name], reduce, index=k))[None, None]
            up = torch.nn.functional.interpolate(reduced, size=masks.shape[-2:], mode="bilinear", align_corners=False)
            values.append(map_auc(up[0, 0].numpy(), masks[k, 0].numpy()))
        scores[name] = float(np.nanmean(values)) if values else float("nan")
    return scores


def plot_feature_auc(scores, title: str = "AUC of each map as a polyp detector") -> Figure:
    """:func:`feature_auc`'s scores as Fig. 8's grid: one row per level i, one column per order n, then CE^i."""
    grid = np.full((NUM_LEVELS, NUM_LEVELS + 1), np.nan)
    for name, value in scores.items():
        if name.startswith("CE^"):
            grid[int(name[3:]) - 1, NUM_LEVELS] = value
        else:
            n, i = (int(v) for v in name[3:].split("^"))
            grid[i - 1, n - 1] = value
    fig = Figure(figsize=(7.2, 4.6))
    ax = fig.subplots()
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="coolwarm", vmin=0, vmax=1)
    for (r, c), value in np.ndenumerate(grid):
        if np.isfinite(value):
            ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=9)
    ax.set_xticks(range(NUM_LEVELS + 1), [f"n = {n}" for n in range(1, NUM_LEVELS + 1)] + ["CE"])
    ax.set_yticks(range(NUM_LEVELS), [f"level {i}" for i in range(1, NUM_LEVELS + 1)])
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, label="AUC (0.5: no information)")
    fig.tight_layout()
    return fig


def _finite_limits(arrays: Iterable[np.ndarray]) -> tuple[float, float]:
    lo, hi = np.inf, -np.inf
    for a in arrays:
        a = a[np.isfinite(a)]
        if a.size:
            lo, hi = min(lo, float(a.min())), max(hi, float(a.max()))
    if not np.isfinite(lo):
        return 0.0, 1.0
    if hi <= lo:
        hi = lo + 1e-6
    return lo, hi


def _hide(ax) -> None:
    ax.set_visible(False)


def _clean(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _show_map(fig, ax, data, title=None, cmap="viridis", vmin=None, vmax=None, colorbar=False, fontsize=10):
    im = ax.imshow(data, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    _clean(ax)
    if title:
        ax.set_title(title, fontsize=fontsize)
    if colorbar:
        _colorbar(fig, im, ax, fraction=0.046, pad=0.03)
    return im


def _colorbar(fig, im, ax, **kwargs):
    """A colour bar with compact tick labels (``3.2e+07`` rather than a separate offset text that overlaps)."""
    from matplotlib.ticker import FuncFormatter

    cb = fig.colorbar(im, ax=ax, **kwargs)
    cb.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    cb.ax.tick_params(labelsize=7)
    return cb


def _contour(ax, mask2d: np.ndarray, color, linewidth=1.2):
    """Draw the boundary of a (binary or label) mask, if it has one."""
    values = np.unique(mask2d[np.isfinite(mask2d)])
    if values.size < 2:
        return
    levels = (values[:-1] + values[1:]) / 2
    ax.contour(mask2d, levels=levels, colors=[color], linewidths=linewidth)


class _EvalMode:
    """Temporarily put a module in eval mode (so BatchNorm statistics are not updated while plotting)."""

    def __init__(self, module):
        self.module, self.was_training = module, module.training

    def __enter__(self):
        self.module.eval()
        return self.module

    def __exit__(self, *exc):
        self.module.train(self.was_training)


# ----------------------------------------------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------------------------------------------
def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 120, **savefig_kwargs) -> Path:
    """Write ``fig`` to ``path`` atomically (a temporary file in the same folder, then a rename), creating the
    parent folders; the format follows the suffix (``.png`` by default when there is none). Returns the path."""
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".png")
    fmt = savefig_kwargs.pop("format", path.suffix.lstrip(".").lower())
    if fig.get_layout_engine() is None:  # figures made here already fit their canvas (constrained layout)
        savefig_kwargs.setdefault("bbox_inches", "tight")
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        fig.savefig(handle, format=fmt, dpi=dpi, **savefig_kwargs)
    return path
