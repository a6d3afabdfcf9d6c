"""Figures for the notebooks: plain functions that take tensors and return matplotlib ``Figure`` objects.

Nothing here needs a notebook front-end: every function builds a ``matplotlib.figure.Figure`` directly (no
``pyplot`` state, so figures never pile up or pop up by themselves) and can be saved with ``save_figure``.

* ``plot_feature_pyramid`` — the paper's Fig. 8: every ``MS_n^i`` of the multi-scale in multi-scale subtraction
  module (rows: level i, columns: order n) plus the complementarity-enhanced ``CE^i``.
* ``plot_msu_scales`` — inside one multi-scale subtraction unit (Eq. 2): its two inputs, the terms
  ``|F_k(up A) − F_k(B)|`` for every kernel size k, their sum and the unit's output.
* ``plot_lossnet_features`` — Fig. 4: the four VGG-16 levels of LossNet for the mask, the prediction and their
  squared difference (whose mean is the loss of that level).
* ``plot_training_curves`` (seaborn), ``plot_predictions`` (Fig. 6 style grid with contours), ``overlay``,
  ``denormalize``, ``reduce_map`` and ``save_figure``.

Tensors may live on any device and carry a batch dimension (``index`` picks the sample).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.synthetic.generate import all_pairs
from ..metrics import PROB_CUT, binarize_prob
from ..mmsm import NUM_LEVELS, ce_key, ms_key, unit_name
from ..subtraction import upsample_like
from .figures import (  # noqa: F401  (re-exported: the notebooks import them from here)
    REDUCE_MODES,
    Figure,
    _as_probability,
    _clean,
    _colorbar,
    _contour,
    _EvalMode,
    _finite_limits,
    _hide,
    _mask2d,
    _pick,
    _show_map,
    _to_numpy,
    denormalize,
    feature_title,
    figure_png,
    overlay,
    reduce_map,
    save_figure,
    show_figure,
)

__all__ = [
    "REDUCE_MODES",
    "Figure",
    "denormalize",
    "feature_title",
    "figure_png",
    "msu_scale_maps",
    "gallery",
    "overlay",
    "plot_feature_pyramid",
    "plot_lossnet_features",
    "plot_msu_scales",
    "plot_predictions",
    "plot_training_curves",
    "reduce_map",
    "save_figure",
    "show_figure",
    "unit_inputs",
]

LOSSNET_LEVEL_NAMES = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
# Columns of a training log (see the trainer's metrics.csv) grouped into panels; other numeric columns are ignored.
LOSS_COLUMNS = ("train_loss", "train_structure", "train_lossnet")
VAL_COLUMNS = ("val_dice", "val_iou", "val_mae")
LR_COLUMNS = ("lr_encoder", "lr_head")


# ----------------------------------------------------------------------------------------------------------------
# Fig. 8: the pyramid of multi-scale subtraction features
# ----------------------------------------------------------------------------------------------------------------
def _draw_input(ax, row: int, image, mask, index: int) -> None:
    """The lead column of ``plot_feature_pyramid``: the image (with the mask's contour), then the mask."""
    if row == 0 and image is not None:
        ax.imshow(denormalize(image, index=index))
        if mask is not None:
            _contour(ax, _mask2d(mask, index), "lime")
        ax.set_title("image", fontsize=10)
    elif mask is not None and row == (1 if image is not None else 0):
        ax.imshow(_mask2d(mask, index), cmap="gray", interpolation="nearest")
        ax.set_title("mask", fontsize=10)
    else:
        _hide(ax)


def _pyramid_cells(features, levels: list[int], orders: list[int], show_ce: bool):
    """Which maps ``plot_feature_pyramid`` shows: ``{(row, order): MS name}``, the order of each column, and
    ``{row: CE name}``."""
    cells: dict[tuple[int, int], str] = {}
    for r, i in enumerate(levels):
        for n in orders:
            if ms_key(n, i) in features:
                cells[(r, n)] = ms_key(n, i)
    columns = [n for n in orders if any((r, n) in cells for r in range(len(levels)))]
    ce_rows = {r: ce_key(i) for r, i in enumerate(levels) if show_ce and ce_key(i) in features}
    if not cells and not ce_rows:
        raise ValueError(
            "features hold none of the requested MS_n^i / CE^i maps: pass the dict of model.forward_features(x)"
        )
    return cells, columns, ce_rows


def plot_feature_pyramid(
    features: Mapping[str, torch.Tensor],
    image=None,
    mask=None,
    reduce: str = "mean",
    channel: int = 0,
    shared_scale: bool = False,
    cmap: str = "viridis",
    levels: Sequence[int] = (1, 2, 3, 4, 5),
    orders: Sequence[int] = (1, 2, 3, 4, 5),
    show_ce: bool = True,
    index: int = 0,
    title: str | None = None,
    cell_size: float = 1.9,
) -> Figure:
    """The paper's Fig. 8 from ``model.forward_features(x)``: rows = level i (1 = finest, stride 4), columns =
    order n (``MS_1^i`` = the reduced encoder level, ``MS_n^i`` = unit output spanning levels i … i+n−1), and a
    last column with ``CE^i``.

    Each map (C×h×w) is reduced to an image with ``reduce_map(reduce, channel)`` and shown at its own resolution.
    ``shared_scale=True`` puts all maps on one colour scale (with one colour bar); otherwise each map is min–max
    scaled on its own, which shows *where* each map responds, not how strongly. Cells without a feature (i + n > 6,
    orders above the model's ``max_order``) are hidden. ``image`` (normalised tensor) and ``mask`` are drawn in an
    extra first column. ``index`` picks the sample of a batch.
    """
    levels, orders = [int(i) for i in levels], [int(n) for n in orders]
    cells, columns, ce_rows = _pyramid_cells(features, levels, orders, show_ce)
    lead = 1 if image is not None or mask is not None else 0
    ncols = lead + len(columns) + (1 if ce_rows else 0)
    nrows = max(len(levels), lead * ((image is not None) + (mask is not None)))
    maps = {name: reduce_map(features[name], reduce, channel, index) for name in [*cells.values(), *ce_rows.values()]}
    vmin = vmax = None
    if shared_scale:
        vmin, vmax = _finite_limits(maps.values())

    extra = 0.7 if shared_scale else 0.0
    fig = Figure(figsize=(cell_size * ncols + extra, cell_size * nrows + 0.6), layout="constrained")
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False))
    for ax in axes.flat:
        _clean(ax)
    last_im = None
    for r in range(nrows):
        for c in range(ncols):
            ax = axes[r, c]
            if c < lead:
                _draw_input(ax, r, image, mask, index)
                continue
            name = None
            if r < len(levels):
                if c - lead < len(columns):
                    name = cells.get((r, columns[c - lead]))
                else:
                    name = ce_rows.get(r)
            if name is None:
                _hide(ax)
                continue
            h, w = maps[name].shape
            last_im = _show_map(fig, ax, maps[name], f"{feature_title(name)}  {h}×{w}", cmap, vmin, vmax)
    for r, i in enumerate(levels):  # label each row once, on its first visible feature cell
        visible = [ax for ax in axes[r, lead:] if ax.get_visible()]
        if visible:
            visible[0].set_ylabel(f"level {i}", fontsize=10)
    if shared_scale and last_im is not None:
        cb = _colorbar(fig, last_im, axes[:, lead:].ravel().tolist(), shrink=0.6, pad=0.02)
        cb.set_label(f"{reduce} (shared scale)", fontsize=9)
    what = {"mean": "channel mean", "max": "channel max", "channel": f"channel {channel}", "pca": "1st principal component"}[reduce]
    scale = "one shared colour scale" if shared_scale else "each map min–max scaled"
    fig.suptitle(title or f"Multi-scale subtraction features (rows: level i, columns: order n) — {what}, {scale}",
                 fontsize=11)
    return fig


# ----------------------------------------------------------------------------------------------------------------
# Inside one unit: the scale terms of Eq. 2
# ----------------------------------------------------------------------------------------------------------------
def unit_inputs(model, features: Mapping[str, torch.Tensor], n: int, i: int):
    """``(unit, up(A), B)`` of unit ``MS_n^i``: ``A = MS_{n-1}^{i+1}`` (through ``mmsm.top_input`` for n = 5),
    up-sampled to ``B = MS_{n-1}^i``. Raises a clear ``ValueError`` for a unit the model does not have."""
    n, i = int(n), int(i)
    if n < 2 or i < 1 or i + n > NUM_LEVELS + 1:
        raise ValueError(
            f"MS_{n}^{i} is not a unit: units have order n ≥ 2 and level i with i + n ≤ {NUM_LEVELS + 1} "
            "(MS_1^i are the reduced encoder levels)"
        )
    mmsm = model.mmsm
    name = unit_name(n, i)
    if name not in mmsm.units:
        raise ValueError(f"this model has no unit {name} (max_order={mmsm.max_order})")
    a, b = mmsm.unit_inputs(features, n, i)  # the module's own wiring (top_input for n = 5)
    return mmsm.units[name], upsample_like(a, b), b


def msu_scale_maps(model, features: Mapping[str, torch.Tensor], n: int, i: int) -> dict[str, torch.Tensor]:
    """The tensors shown by ``plot_msu_scales``: ``"up(A)"``, ``"B"``, ``"k=1"``, ``"k=3"`` … , ``"sum"`` and
    ``"output"`` (= ``MS_n^i``). Needs multi-scale subtraction units (``unit="msu"``)."""
    with _EvalMode(model), torch.no_grad():
        unit, a_up, b = unit_inputs(model, features, n, i)
        if not hasattr(unit, "scale_terms"):
            kind = type(unit).__name__
            raise ValueError(
                f"unit {unit_name(n, i)} is a {kind} (model built with unit={model.mmsm.unit_type!r}): it has a single "
                "term, no filter scales. Use a model with unit='msu' (M2SNet), or plot its features with "
                "plot_feature_pyramid"
            )
        terms = unit.scale_terms(a_up, b)
        out = {"up(A)": a_up, "B": b}
        out.update({f"k={k}": t for k, t in terms.items()})
        out["sum"] = unit.combine(a_up, b)
        out["output"] = features.get(ms_key(n, i))
        if out["output"] is None:
            out["output"] = unit.conv(out["sum"])
    return out


def plot_msu_scales(
    model,
    features: Mapping[str, torch.Tensor],
    n: int,
    i: int,
    reduce: str = "mean",
    channel: int = 0,
    cmap: str = "viridis",
    shared_scale: bool = False,
    index: int = 0,
    show_inputs: bool = True,
) -> Figure:
    """One multi-scale subtraction unit ``MS_n^i`` (Eq. 2): inputs ``up(A)`` = ``MS_{n-1}^{i+1}`` up-sampled and
    ``B`` = ``MS_{n-1}^i``, the terms ``|F_k(up A) − F_k(B)|`` for each kernel size k (k = 1 is the plain
    difference, larger k compare k×k neighbourhood sums: regional rather than pixel differences), their sum (what
    the unit's conv sees) and the unit's output.

    Every panel has its own colour bar; ``shared_scale=True`` puts the k terms on one scale instead (with the
    all-ones filters the large-k terms, sums over k×k×C values, then dwarf the k = 1 term). Raises a
    ``ValueError`` for SU/AU models (MSNet, addition ablation): their units have no scales.
    """
    maps_t = msu_scale_maps(model, features, n, i)
    if not show_inputs:
        maps_t.pop("up(A)"), maps_t.pop("B")
    maps = {k: reduce_map(v, reduce, channel, index) for k, v in maps_t.items()}
    term_keys = [k for k in maps if k.startswith("k=")]
    vmin = vmax = None
    if shared_scale:
        vmin, vmax = _finite_limits(maps[k] for k in term_keys)
    titles = {
        "up(A)": (rf"up(A) = up(CBR($MS_{{{n - 1}}}^{{{i + 1}}}$))" if n == NUM_LEVELS and model.mmsm.top_input is not None
                  else rf"up(A) = up($MS_{{{n - 1}}}^{{{i + 1}}}$)"),
        "B": rf"B = $MS_{{{n - 1}}}^{{{i}}}$",
        "sum": r"$\Sigma_k$ (conv input)",
        "output": rf"output {feature_title(ms_key(n, i))}",
    }
    for k in term_keys:
        size = int(k[2:])
        titles[k] = r"$|A - B|$ (k=1)" if size == 1 else rf"$|F_{{{size}}}(A) - F_{{{size}}}(B)|$"
    fig = Figure(figsize=(2.45 * len(maps), 2.9), layout="constrained")
    axes = fig.subplots(1, len(maps), squeeze=False)[0]
    for ax, (key, data) in zip(axes, maps.items()):
        shared = key in term_keys and shared_scale
        im = _show_map(fig, ax, data, titles[key], cmap, vmin if shared else None, vmax if shared else None,
                       colorbar=not shared, fontsize=9)
        if shared and key == term_keys[-1]:
            _colorbar(fig, im, [axes[list(maps).index(t)] for t in term_keys], shrink=0.8, pad=0.02)
    h, w = next(iter(maps.values())).shape
    fig.suptitle(f"Unit {feature_title(ms_key(n, i))} at {h}×{w}: scale terms of Eq. 2 ({reduce})", fontsize=11)
    return fig


# ----------------------------------------------------------------------------------------------------------------
# Fig. 4: LossNet
# ----------------------------------------------------------------------------------------------------------------
def plot_lossnet_features(
    mask,
    prediction,
    lossnet,
    reduce: str = "mean",
    channel: int = 0,
    cmap: str = "viridis",
    index: int = 0,
    from_logits: bool | None = None,
) -> Figure:
    """Fig. 4: the mask, the prediction and their squared difference through LossNet's four VGG-16 levels.

    Rows: mask, prediction, squared difference; columns: the input map, then relu1_2 … relu4_3. Mask and
    prediction share one colour scale per level; the difference row's title gives that level's MSE (the loss
    LossNet adds up). ``prediction`` is a probability map; logits are detected (values outside [0, 1]) and passed
    through a sigmoid unless ``from_logits`` says otherwise. ``lossnet`` is an ``m2s_lib.losses.LossNet``.
    """
    m = torch.as_tensor(_mask2d(mask, index))[None, None]
    p = torch.as_tensor(_as_probability(_mask2d(prediction, index), from_logits))[None, None]
    if m.shape != p.shape:
        p = torch.nn.functional.interpolate(p, size=m.shape[-2:], mode="bilinear", align_corners=False)
    device = next(iter(lossnet.buffers()), torch.empty(0)).device
    with torch.no_grad():
        fm = lossnet.features(m.to(device))
        fp = lossnet.features(p.to(device))
    fig = Figure(figsize=(2.3 * 5 + 0.6, 2.25 * 3 + 0.5), layout="constrained")
    axes = fig.subplots(3, 5, squeeze=False)
    sq_in = (m - p) ** 2
    _show_map(fig, axes[0, 0], m[0, 0].numpy(), "mask", "gray", 0, 1, fontsize=9)
    _show_map(fig, axes[1, 0], p[0, 0].numpy(), "prediction", "gray", 0, 1, fontsize=9)
    _show_map(fig, axes[2, 0], sq_in[0, 0].numpy(), f"(mask − pred)²\nMSE = {float(sq_in.mean()):.3g}", "magma",
              colorbar=True, fontsize=9)
    total = 0.0
    for col, (a, b, name) in enumerate(zip(fm, fp, LOSSNET_LEVEL_NAMES), start=1):
        ra, rb = reduce_map(a, reduce, channel), reduce_map(b, reduce, channel)
        lo, hi = _finite_limits([ra, rb])
        c, h, w = a.shape[1:]
        _show_map(fig, axes[0, col], ra, f"{name}  {c}×{h}×{w}", cmap, lo, hi, fontsize=9)
        _show_map(fig, axes[1, col], rb, None, cmap, lo, hi, colorbar=True)
        sq = (a - b) ** 2
        mse = float(sq.mean())
        total += mse
        _show_map(fig, axes[2, col], reduce_map(sq, reduce, channel), f"MSE = {mse:.3g}", "magma", colorbar=True,
                  fontsize=9)
    for r, label in enumerate(("mask", "prediction", "squared diff.")):
        axes[r, 0].set_ylabel(label, fontsize=10)
    fig.suptitle(f"LossNet (VGG-16 levels, {reduce}): L_f = Σ MSE = {total:.4g}", fontsize=11)
    return fig


# ----------------------------------------------------------------------------------------------------------------
# Training curves
# ----------------------------------------------------------------------------------------------------------------
def plot_training_curves(metrics, x: str = "epoch") -> Figure:
    """Training log → panels vs ``x`` (epoch): losses, validation metrics and learning rates (log scale).

    ``metrics``: a path to the trainer's ``metrics.csv`` or a ``pandas.DataFrame``. Known columns (``train_loss``,
    ``train_structure``, ``train_lossnet``; ``val_dice``, ``val_iou``, ``val_mae``; ``lr_encoder``, ``lr_head``) are
    plotted when present and numeric; missing or empty ones are skipped, as are panels with no column. Several rows
    per epoch (step-level logs) are averaged per epoch; rows without a value (e.g. no validation) are ignored.
    """
    import pandas as pd
    import seaborn as sns

    df = metrics if isinstance(metrics, pd.DataFrame) else pd.read_csv(metrics)
    df = df.copy()
    if x not in df.columns:
        x = "step" if "step" in df.columns else "row"
        if x == "row":
            df[x] = np.arange(len(df))
    groups = [("loss", LOSS_COLUMNS, "loss", False), ("validation", VAL_COLUMNS, "score", False),
              ("learning rate", LR_COLUMNS, "lr", True)]
    panels = []
    for title, cols, ylabel, log in groups:
        present = []
        for col in cols:
            if col in df.columns:
                values = pd.to_numeric(df[col], errors="coerce")
                if values.notna().any():
                    df[col] = values
                    present.append(col)
        if present:
            panels.append((title, present, ylabel, log))
    if not panels:
        raise ValueError(
            f"no plottable column: expected some of {LOSS_COLUMNS + VAL_COLUMNS + LR_COLUMNS}, got {list(df.columns)}"
        )
    fig = Figure(figsize=(4.6 * len(panels), 3.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, cols, ylabel, log) in zip(axes, panels):
        long = df[[x, *cols]].melt(id_vars=x, var_name="metric", value_name=ylabel).dropna(subset=[ylabel])
        if log and (long[ylabel] <= 0).any():
            log = False
        sns.lineplot(data=long, x=x, y=ylabel, hue="metric", marker="o", markersize=4, errorbar=None, ax=ax)
        if log:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, title=None)
        if title == "validation":
            for col in cols:
                best = long[long.metric == col].groupby(x)[ylabel].mean()
                if len(best):
                    at = best.idxmin() if col.endswith("mae") else best.idxmax()
                    ax.annotate(f"{best[at]:.3f}", (at, best[at]), fontsize=7, xytext=(3, 3),
                                textcoords="offset points")
    fig.suptitle("Training curves", fontsize=11)
    return fig


# ----------------------------------------------------------------------------------------------------------------
# Fig. 6: predictions
# ----------------------------------------------------------------------------------------------------------------
def _as_list(x) -> list:
    if isinstance(x, torch.Tensor):
        if x.ndim >= 4 or (x.ndim == 3 and x.shape[0] not in (1, 3)):
            return list(x)
        return [x]
    if isinstance(x, np.ndarray):
        return list(x) if x.ndim >= 4 else [x]
    return list(x)


def plot_predictions(
    images,
    masks,
    preds,
    names: Sequence[str] | None = None,
    threshold: float = PROB_CUT,
    max_images: int = 8,
    from_logits: bool | None = None,
) -> Figure:
    """Fig. 6 style grid: one row per image; columns = image (with the ground-truth contour), ground truth, then
    one column per method with its probability map, the ground-truth contour (green) and the contour of the
    prediction at ``threshold`` (red).

    ``images``: N×3×H×W normalised tensor or a list of images; ``masks``: N×1×H×W / list of H×W maps;
    ``preds``: probability maps like ``masks`` (logits are detected and passed through a sigmoid), or a dict
    ``{method name: maps}`` to compare several models. ``names`` label the rows (e.g. dataset file names).
    """
    images, masks = _as_list(images), _as_list(masks)
    methods = dict(preds) if isinstance(preds, Mapping) else {"prediction": preds}
    methods = {k: _as_list(v) for k, v in methods.items()}
    count = min(len(images), len(masks), *(len(v) for v in methods.values()), int(max_images))
    if count == 0:
        raise ValueError("plot_predictions needs at least one image, mask and prediction")
    ncols = 2 + len(methods)
    fig = Figure(figsize=(2.1 * ncols, 2.1 * count + 0.4), layout="constrained")
    axes = fig.subplots(count, ncols, squeeze=False)
    for r in range(count):
        gt = _mask2d(masks[r])
        ax = axes[r, 0]
        ax.imshow(denormalize(images[r]))
        _contour(ax, gt, "lime")
        ax.set_ylabel(str(names[r]) if names is not None and r < len(names) else f"#{r}", fontsize=9)
        axes[r, 1].imshow(gt, cmap="gray", interpolation="nearest")
        for c, maps in enumerate(methods.values(), start=2):
            prob = _as_probability(_mask2d(maps[r]), from_logits)
            ax = axes[r, c]
            ax.imshow(prob, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            if prob.shape == gt.shape:
                _contour(ax, gt, "lime", 1.0)
            _contour(ax, binarize_prob(prob, threshold).astype(np.float32), "red", 1.0)
        if r == 0:
            axes[r, 0].set_title("image", fontsize=10)
            axes[r, 1].set_title("ground truth", fontsize=10)
            for c, method in enumerate(methods, start=2):
                axes[r, c].set_title(method, fontsize=10)
        for ax in axes[r]:
            _clean(ax)
    fig.suptitle(f"Predictions (green: ground truth, red: prediction > {threshold:g})", fontsize=11)
    return fig


def gallery(root, n: int = 8, seed: int = 0, cols: int = 4):
    """A figure of ``n`` random image/mask pairs found under ``root`` (all splits), with the mask contours drawn
    on the images (one colour per class for label images). Returns a ``matplotlib.figure.Figure``."""
    root = Path(root)
    pairs = all_pairs(root)
    if not pairs:
        raise FileNotFoundError(f"no images/masks pairs under {root}")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(pairs), size=min(n, len(pairs)), replace=False)
    cols = max(1, min(cols, len(pick)))
    rows = math.ceil(len(pick) / cols)
    fig = Figure(figsize=(3.0 * cols, 3.0 * rows), layout="constrained")
    colours = ["#00ff66", "#ffdd00", "#00ccff", "#ff3366"]
    for k, idx in enumerate(pick):
        split, name, ip, mp_ = pairs[int(idx)]
        ax = fig.add_subplot(rows, cols, k + 1)
        img = np.asarray(Image.open(ip).convert("RGB"))
        mask = np.asarray(Image.open(mp_).convert("L"))
        ax.imshow(img)
        values = [v for v in np.unique(mask) if v != 255] if set(np.unique(mask)) - {0, 255} else [255]
        for j, val in enumerate(values):
            ax.contour(mask == val, levels=[0.5], colors=colours[j % len(colours)], linewidths=1.0)
        ax.set_title(f"{split}/{name}", fontsize=8)
        ax.axis("off")
    return fig
