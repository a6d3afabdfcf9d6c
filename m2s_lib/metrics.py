"""The paper's metrics, on top of pysodmetrics, with every protocol named.

Polyp (Table 1): mDice, mIoU, weighted F-measure ``wFm`` (Fβw), S-measure ``Sm`` (Sα), E-measure ``maxEm`` /
``meanEm`` (Eφ), ``MAE``. Two protocols:

``pranet``  — the field's tables (PraNet's MATLAB toolbox, as re-implemented by pysodmetrics). Per image the map is
              min-max normalised to [0, 1] (from 8-bit values, exactly as saved PNGs are read) and the mask
              binarised at 128; Dice and IoU are computed at 256 thresholds (pixel ≥ t for t = 255 … 0) and averaged
              over the thresholds; Sα, Fβw and MAE are per image; every per-image value is averaged over images. Eφ
              is computed at the same 256 thresholds, averaged over images, and ``maxEm`` / ``meanEm`` are the
              maximum / mean of that curve. (pysodmetrics: a threshold where prediction and mask are both empty
              scores Dice = IoU = 0.)
``authors`` — the authors' ``test_score.py``: the same normalised map, *soft* Dice
              ``(2Σpg + 1e-5) / (Σp + Σg + 1e-5)`` without any threshold, IoU of ``p > 0.5`` with the same
              smoothing; the other columns as in ``pranet``.

COVID-19 (Table 3: Precision, Recall, DSC, Sα, MAE) and BUSI (Table 4: Jaccard, Precision, Recall, Dice,
Specificity, mean ± std over four folds) use the protocol ``binary@0.5``: the *probability* map (not normalised)
thresholded at 0.5, every measure per image, then averaged over images.

OCT (GOALS, Table 5): ``oct``: Dice per layer on the arg-max label map, and the mean Euclidean distance (MED, in
pixels) between predicted and true layer boundaries, measured per image column (A-scan): for each layer the
upper and lower boundary rows, ``|Δrow|`` averaged over the columns where the true layer exists; a column where
the prediction misses the layer counts the image height.

Inputs are numpy arrays: predictions as probabilities in [0, 1] (float) or 8-bit maps (uint8), masks as bool,
{0, 1} or 0–255 (binarised at 128). Tables are pandas DataFrames with a ``protocol`` column and
``df.attrs["protocol"]``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import py_sod_metrics as sod
from py_sod_metrics.utils import prepare_data

from .constants import GOALS_CLASS_NAMES, POLYP_TEST_SETS

__all__ = [
    "PROTOCOLS",
    "POLYP_COLUMNS",
    "POLYP_TEST_SETS",
    "DICE_SMOOTH",
    "PROB_CUT",
    "binarize_prob",
    "to_uint8",
    "binarize_mask",
    "score_map",
    "PolypMetrics",
    "BinaryMetrics",
    "OCTMetrics",
    "results_table",
    "fold_summary",
    "mean_std_text",
    "boundary_distance",
    "table1",
    "task_metric",
    "headline",
    "to_markdown",
]

PROTOCOLS = {
    "pranet": "PraNet: map min-max normalised, Dice/IoU mean over 256 thresholds per image, then mean over images",
    "authors": "authors' test_score.py: soft Dice on the normalised map, IoU at 0.5 (smooth 1e-5), mean over images",
    "binary@0.5": "probability map thresholded at 0.5, measures per image, mean over images",
    "oct": "arg-max labels: Dice per layer; MED = mean |Δrow| of upper/lower layer boundaries per column (pixels)",
}

POLYP_COLUMNS = ("mDice", "mIoU", "wFm", "Sm", "maxEm", "MAE")
COVID_COLUMNS = ("Precision", "Recall", "DSC", "Sm", "MAE")
BUSI_COLUMNS = ("Jaccard", "Precision", "Recall", "Dice", "Specificity")

# One home for two small rules that several modules apply (the evaluation, the ablation probe, prediction files,
# the figures): the smoothing of a Dice/IoU ratio, and the cut that turns a probability into a decision.
DICE_SMOOTH = 1e-5  # the authors' constant: (2Σpg + s) / (Σp + Σg + s)
PROB_CUT = 0.5


def binarize_prob(prob, threshold: float = PROB_CUT):
    """The one probability cut: ``prob > threshold`` (numpy arrays and torch tensors alike). Strict, as
    pysodmetrics' binary measures (``binary@0.5``) cut: a probability of exactly 0.5 (logit 0) is background."""
    return prob > threshold


# ---------------------------------------------------------------------------------------------------------------
# Input normalisation
# ---------------------------------------------------------------------------------------------------------------
def to_uint8(pred: np.ndarray) -> np.ndarray:
    """A probability map in [0, 1] → 8-bit map (``round(255·p)``), the form predictions are saved and scored in."""
    pred = np.asarray(pred)
    if pred.dtype == np.uint8:
        return pred
    if pred.dtype == bool:
        return pred.astype(np.uint8) * 255
    return np.clip(np.rint(pred.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def binarize_mask(gt: np.ndarray) -> np.ndarray:
    """A mask as bool: bool as is, floats ``> 0.5``, integer {0, 1} masks ``> 0``, 0–255 masks ``> 128``."""
    gt = np.asarray(gt)
    if gt.dtype == bool:
        return gt
    if np.issubdtype(gt.dtype, np.floating):
        return gt > 0.5
    return gt > (0 if gt.max(initial=0) <= 1 else 128)


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred), np.asarray(gt)
    pred = pred.squeeze() if pred.ndim > 2 else pred
    gt = gt.squeeze() if gt.ndim > 2 else gt
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and mask {gt.shape} differ in size: resize the prediction first")
    if np.issubdtype(pred.dtype, np.floating) and pred.size and (np.nanmin(pred) < 0 or np.nanmax(pred) > 1):
        raise ValueError("a float prediction must hold probabilities in [0, 1] (apply sigmoid/softmax first)")
    return pred, gt


# ---------------------------------------------------------------------------------------------------------------
# Polyp
# ---------------------------------------------------------------------------------------------------------------
class PolypMetrics:
    """Accumulates the polyp measures image by image (``update``), then ``results()`` / ``per_image()``.

    ``measures`` limits the work (``("mDice", "mIoU", "MAE")`` is what training validation uses).
    """

    ALL = ("mDice", "mIoU", "wFm", "Sm", "maxEm", "meanEm", "MAE")

    def __init__(self, protocol: str = "pranet", measures: Sequence[str] | None = None):
        if protocol not in ("pranet", "authors"):
            raise ValueError(f"polyp protocol {protocol!r} is unknown: choose 'pranet' or 'authors'")
        measures = tuple(measures or self.ALL)
        unknown = [m for m in measures if m not in self.ALL]
        if unknown:
            raise ValueError(f"unknown measures {unknown}: choose from {self.ALL}")
        self.protocol, self.measures = protocol, measures
        self.names: list[str] = []
        want = set(measures)
        handlers = {}
        if protocol == "pranet":
            if "mDice" in want:
                handlers["dice"] = sod.DICEHandler(with_dynamic=True, with_adaptive=False)
            if "mIoU" in want:
                handlers["iou"] = sod.IOUHandler(with_dynamic=True, with_adaptive=False)
        self._fm = sod.FmeasureV2(handlers) if handlers else None
        self._soft: dict[str, list[float]] = {"dice": [], "iou": []}
        self._sm = sod.Smeasure() if "Sm" in want else None
        self._wfm = sod.WeightedFmeasure() if "wFm" in want else None
        self._em = sod.Emeasure() if {"maxEm", "meanEm"} & want else None
        self._mae = sod.MAE() if "MAE" in want else None

    def __len__(self) -> int:
        return len(self.names)

    def update(self, pred: np.ndarray, gt: np.ndarray, name: str | None = None) -> None:
        """Add one image: ``pred`` probabilities (float) or 8-bit map, ``gt`` mask (same H×W)."""
        pred, gt = _check_pair(pred, gt)
        pred8, gt8 = to_uint8(pred), binarize_mask(gt).astype(np.uint8) * 255
        for metric in (self._fm, self._sm, self._wfm, self._em, self._mae):
            if metric is not None:
                metric.step(pred=pred8, gt=gt8, normalize=True)
        if self.protocol == "authors":
            p, g = prepare_data(pred8, gt8)
            inter = float((p * g).sum())
            self._soft["dice"].append((2 * inter + DICE_SMOOTH) / (float(g.sum()) + float(p.sum()) + DICE_SMOOTH))
            hard = binarize_prob(p)
            self._soft["iou"].append(
                (float((hard & g).sum()) + DICE_SMOOTH) / (float((hard | g).sum()) + DICE_SMOOTH)
            )
        self.names.append(name if name is not None else f"{len(self.names):05d}")

    def per_image(self) -> pd.DataFrame:
        """One row per image: ``name`` and the per-image value of every measure (Em: mean over thresholds)."""
        cols: dict[str, Sequence[float]] = {"name": self.names}
        if self.protocol == "pranet" and self._fm is not None:
            handlers = self._fm._metric_handlers
            if "dice" in handlers:
                cols["mDice"] = [float(np.mean(r)) for r in handlers["dice"].dynamic_results]
            if "iou" in handlers:
                cols["mIoU"] = [float(np.mean(r)) for r in handlers["iou"].dynamic_results]
        elif self.protocol == "authors":
            if "mDice" in self.measures:
                cols["mDice"] = self._soft["dice"]
            if "mIoU" in self.measures:
                cols["mIoU"] = self._soft["iou"]
        if self._wfm is not None:
            cols["wFm"] = [float(v) for v in self._wfm.weighted_fms]
        if self._sm is not None:
            cols["Sm"] = [float(v) for v in self._sm.sms]
        if self._em is not None:
            cols["maxEm"] = [float(np.max(v)) for v in self._em.changeable_ems]
            cols["meanEm"] = [float(np.mean(v)) for v in self._em.changeable_ems]
        if self._mae is not None:
            cols["MAE"] = [float(v) for v in self._mae.maes]
        df = pd.DataFrame(cols)
        df.attrs["protocol"] = self.protocol
        return df

    def results(self) -> dict[str, float]:
        """Dataset scores: ``n`` plus each measure (``maxEm`` = max over thresholds of the mean Eφ curve)."""
        if not self.names:
            raise ValueError("no image was scored")
        out: dict[str, float] = {"n": len(self.names)}
        if self.protocol == "pranet" and self._fm is not None:
            res = self._fm.get_results()
            if "dice" in res:
                out["mDice"] = float(np.mean(res["dice"]["dynamic"]))
                out["maxDice"] = float(np.max(res["dice"]["dynamic"]))
            if "iou" in res:
                out["mIoU"] = float(np.mean(res["iou"]["dynamic"]))
                out["maxIoU"] = float(np.max(res["iou"]["dynamic"]))
        elif self.protocol == "authors":
            if "mDice" in self.measures:
                out["mDice"] = float(np.mean(self._soft["dice"]))
            if "mIoU" in self.measures:
                out["mIoU"] = float(np.mean(self._soft["iou"]))
        if self._wfm is not None:
            out["wFm"] = float(self._wfm.get_results()["wfm"])
        if self._sm is not None:
            out["Sm"] = float(self._sm.get_results()["sm"])
        if self._em is not None:
            em = self._em.get_results()["em"]
            out["maxEm"] = float(np.max(em["curve"]))
            out["meanEm"] = float(np.mean(em["curve"]))
            out["adpEm"] = float(em["adp"])
        if self._mae is not None:
            out["MAE"] = float(self._mae.get_results()["mae"])
        return out


def score_map(metric: PolypMetrics | BinaryMetrics, pred: np.ndarray, gt: np.ndarray,
              name: str | None = None) -> np.ndarray:
    """The one per-image step of ``m2s evaluate`` and ``m2s score``: the map in the 8-bit form it is saved and
    scored in (:func:`to_uint8`: probabilities → ``round(255·p)``, 8-bit maps as they are) is added to ``metric``
    against the binarised mask (:func:`binarize_mask`). Returns that 8-bit map."""
    pred8 = to_uint8(pred)
    metric.update(pred8, binarize_mask(gt), name=name)
    return pred8



# ---------------------------------------------------------------------------------------------------------------
# COVID-19 and BUSI: one threshold at 0.5
# ---------------------------------------------------------------------------------------------------------------
class BinaryMetrics:
    """Per-image Precision, Recall, Dice (= DSC), Jaccard (= IoU), Specificity of ``p > 0.5``, plus Sα and MAE of
    the (un-normalised) probability map; averaged over images (protocol ``binary@0.5``)."""

    protocol = "binary@0.5"

    def __init__(self):
        handlers = {
            "Precision": sod.PrecisionHandler(False, False, with_binary=True, sample_based=True),
            "Recall": sod.RecallHandler(False, False, with_binary=True, sample_based=True),
            "Dice": sod.DICEHandler(False, False, with_binary=True, sample_based=True),
            "Jaccard": sod.IOUHandler(False, False, with_binary=True, sample_based=True),
            "Specificity": sod.SpecificityHandler(False, False, with_binary=True, sample_based=True),
        }
        self._fm = sod.FmeasureV2(handlers)
        self._sm, self._mae = sod.Smeasure(), sod.MAE()
        self.names: list[str] = []

    def __len__(self) -> int:
        return len(self.names)

    def update(self, pred: np.ndarray, gt: np.ndarray, name: str | None = None) -> None:
        pred, gt = _check_pair(pred, gt)
        prob = pred.astype(np.float64) / 255.0 if pred.dtype == np.uint8 else pred.astype(np.float64)
        mask = binarize_mask(gt)
        for metric in (self._fm, self._sm, self._mae):
            metric.step(pred=prob, gt=mask, normalize=False)
        self.names.append(name if name is not None else f"{len(self.names):05d}")

    def per_image(self) -> pd.DataFrame:
        cols: dict[str, Sequence] = {"name": self.names}
        for key, handler in self._fm._metric_handlers.items():
            cols[key] = [float(v) for v in handler.binary_results]
        cols["Sm"] = [float(v) for v in self._sm.sms]
        cols["MAE"] = [float(v) for v in self._mae.maes]
        df = pd.DataFrame(cols)
        df.attrs["protocol"] = self.protocol
        return df

    def results(self) -> dict[str, float]:
        if not self.names:
            raise ValueError("no image was scored")
        out: dict[str, float] = {"n": len(self.names)}
        for key, res in self._fm.get_results().items():
            out[key] = float(res["binary"])
        out["DSC"] = out["Dice"]
        out["Sm"] = float(self._sm.get_results()["sm"])
        out["MAE"] = float(self._mae.get_results()["mae"])
        return out




def fold_summary(folds: Sequence[Mapping[str, float]] | pd.DataFrame, ddof: int = 1) -> pd.DataFrame:
    """Mean and standard deviation over folds, as in Table 4: rows ``mean`` and ``std`` (``ddof=1``: sample
    standard deviation), a ``folds`` count and the ``protocol``. :func:`mean_std_text` formats it."""
    df = pd.DataFrame(list(folds)) if not isinstance(folds, pd.DataFrame) else folds.copy()
    protocol = df.attrs.get("protocol") or (str(df["protocol"].iloc[0]) if "protocol" in df.columns else "binary@0.5")
    num = df.drop(columns=[c for c in ("fold", "n", "dataset", "protocol", "name") if c in df.columns])
    num = num.apply(pd.to_numeric)
    summary = pd.DataFrame({"mean": num.mean(), "std": num.std(ddof=ddof)}).T
    summary["folds"] = len(df)
    summary["protocol"] = protocol
    summary.attrs["protocol"] = protocol
    return summary


def mean_std_text(summary: pd.DataFrame, scale: float = 100.0, digits: int = 2) -> pd.DataFrame:
    """One row of ``mean ± std`` strings (in % by default, as the paper prints them) from :func:`fold_summary`."""
    cols = [c for c in summary.columns if c not in ("folds", "protocol")]
    text = {c: f"{scale * summary.loc['mean', c]:.{digits}f} ± {scale * summary.loc['std', c]:.{digits}f}" for c in cols}
    out = pd.DataFrame([text], index=pd.Index(["mean ± std"]))
    out["protocol"] = summary.attrs.get("protocol", "")
    out.attrs["protocol"] = summary.attrs.get("protocol", "")
    return out


# ---------------------------------------------------------------------------------------------------------------
# OCT layers
# ---------------------------------------------------------------------------------------------------------------
def _column_boundaries(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper and lower boundary rows of a binary mask per column, and which columns contain the mask."""
    present = mask.any(axis=0)
    top = np.argmax(mask, axis=0)
    bottom = mask.shape[0] - 1 - np.argmax(mask[::-1], axis=0)
    return top, bottom, present


def boundary_distance(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean |Δrow| between the upper/lower boundaries of two binary masks over the columns where ``gt`` exists.

    A column where ``pred`` lacks the layer counts the image height. NaN if ``gt`` is empty.
    """
    tp, bp, has_p = _column_boundaries(pred)
    tg, bg, has_g = _column_boundaries(gt)
    if not has_g.any():
        return float("nan")
    d = (np.abs(tp - tg) + np.abs(bp - bg)) / 2.0
    d = np.where(has_p, d, float(gt.shape[0]))
    return float(d[has_g].mean())


class OCTMetrics:
    """Dice per layer and MED per layer of label maps (class ids 0 … K−1, 0 = background), averaged over images."""

    protocol = "oct"

    def __init__(self, classes: int, layer_names: Sequence[str] | None = None):
        if classes < 2:
            raise ValueError("OCT metrics need ≥ 2 classes (background + layers)")
        self.classes = classes
        self.layer_names = list(layer_names or [f"layer{c}" for c in range(1, classes)])
        if len(self.layer_names) != classes - 1:
            raise ValueError(f"give {classes - 1} layer names (background excluded)")
        self._dice = {
            c: sod.FmeasureV2({"dice": sod.DICEHandler(False, False, with_binary=True, sample_based=True)})
            for c in range(1, classes)
        }
        self._med: dict[int, list[float]] = {c: [] for c in range(1, classes)}
        self.names: list[str] = []

    def __len__(self) -> int:
        return len(self.names)

    def update(self, pred: np.ndarray, gt: np.ndarray, name: str | None = None) -> None:
        """``pred``, ``gt``: H×W integer label maps (or ``pred`` as K×H×W scores, arg-maxed here)."""
        pred, gt = np.asarray(pred), np.asarray(gt)
        if pred.ndim == 3:
            pred = pred.argmax(0)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {pred.shape} and mask {gt.shape} differ in size")
        for c in range(1, self.classes):
            p, g = pred == c, gt == c
            self._dice[c].step(pred=p.astype(np.float64), gt=g, normalize=False)
            self._med[c].append(boundary_distance(p, g))
        self.names.append(name if name is not None else f"{len(self.names):05d}")

    def per_image(self) -> pd.DataFrame:
        cols: dict[str, Sequence] = {"name": self.names}
        for c, layer in zip(range(1, self.classes), self.layer_names):
            cols[f"Dice_{layer}"] = [float(v) for v in self._dice[c]._metric_handlers["dice"].binary_results]
        for c, layer in zip(range(1, self.classes), self.layer_names):
            cols[f"MED_{layer}"] = self._med[c]
        df = pd.DataFrame(cols)
        df.attrs["protocol"] = self.protocol
        return df

    def results(self) -> dict[str, float]:
        if not self.names:
            raise ValueError("no image was scored")
        out: dict[str, float] = {"n": len(self.names)}
        dices, meds = [], []
        for c, layer in zip(range(1, self.classes), self.layer_names):
            d = float(self._dice[c].get_results()["dice"]["binary"])
            m = float(np.nanmean(self._med[c])) if np.isfinite(self._med[c]).any() else float("nan")
            out[f"Dice_{layer}"], out[f"MED_{layer}"] = d, m
            dices.append(d)
            meds.append(m)
        out["mDice"] = float(np.mean(dices))
        out["MED"] = float(np.nanmean(meds)) if np.isfinite(meds).any() else float("nan")
        return out



# ---------------------------------------------------------------------------------------------------------------
# One metric per task (training validation and `m2s evaluate` both use it)
# ---------------------------------------------------------------------------------------------------------------
# The measures a task reports as its Dice, IoU and MAE (training's val_dice / val_iou / val_mae); OCT's protocol
# has no IoU or MAE.
HEADLINE = {"pranet": ("mDice", "mIoU", "MAE"), "authors": ("mDice", "mIoU", "MAE"),
            "binary@0.5": ("Dice", "Jaccard", "MAE"), "oct": ("mDice", None, None)}


def task_metric(task: str = "polyp", classes: int = 1, protocol: str | None = None,
                measures: Sequence[str] | None = None) -> PolypMetrics | BinaryMetrics | OCTMetrics:
    """The metric accumulator of a task: :class:`OCTMetrics` for label maps (``classes > 1``; GOALS layer names
    when there are four classes), :class:`BinaryMetrics` for COVID and BUSI, else :class:`PolypMetrics` with
    ``protocol`` (default ``pranet``) and ``measures``."""
    if classes > 1:
        names = GOALS_CLASS_NAMES[1:] if classes == len(GOALS_CLASS_NAMES) else None
        return OCTMetrics(classes, names)
    if task in ("covid", "busi"):
        return BinaryMetrics()
    return PolypMetrics(protocol or "pranet", measures=measures)


def headline(metric: PolypMetrics | BinaryMetrics | OCTMetrics, results: Mapping[str, float]) -> dict[str, float]:
    """``{"dice", "iou", "mae"}`` of a metric's results (NaN for what its protocol does not measure)."""
    keys = HEADLINE[metric.protocol]
    return {name: float(results[k]) if k is not None else float("nan") for name, k in zip(("dice", "iou", "mae"), keys)}


# ---------------------------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------------------------
def results_table(
    rows: Mapping[str, Mapping[str, float]], protocol: str, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """One row per dataset: ``dataset``, ``n``, the measures (``columns``, default all), ``protocol``."""
    df = pd.DataFrame([{"dataset": name, **dict(vals)} for name, vals in rows.items()])
    if columns is not None:
        df = df[["dataset", "n", *columns]]
    if "n" in df.columns:
        df["n"] = df["n"].astype(int)
    df["protocol"] = protocol
    df.attrs["protocol"] = protocol
    return df


def table1(results: pd.DataFrame, method: str = "M2SNet (this run)", sets: Sequence[str] = POLYP_TEST_SETS,
           measures: Sequence[str] = POLYP_COLUMNS) -> pd.DataFrame:  # fmt: skip
    """The paper's Table 1 layout: one row per method, columns (test set, measure) over the five polyp sets.

    Sets missing from ``results`` are left out; sets not among the five are appended in their order.
    """
    by_set = results.set_index("dataset")
    order = [s for s in sets if s in by_set.index] + [s for s in by_set.index if s not in sets]
    data = {(s, m): by_set.loc[s, m] for s in order for m in measures if m in by_set.columns}
    df = pd.DataFrame([data], index=pd.Index([method], name="method"))
    df.columns = pd.MultiIndex.from_tuples(df.columns, names=["dataset", "measure"])
    protocol = results.attrs.get("protocol") or (results["protocol"].iloc[0] if "protocol" in results else "")
    df.attrs["protocol"] = protocol
    return df


def to_markdown(df: pd.DataFrame, floatfmt: str = ".3f", title: str | None = None) -> str:
    """Markdown table (tabulate) with the protocol named under it; multi-level headers become ``set / measure``."""
    out = df.copy()
    if isinstance(out.columns, pd.MultiIndex):
        out.columns = [" / ".join(map(str, c)) for c in out.columns]
    show_index = not isinstance(out.index, pd.RangeIndex)
    text = out.to_markdown(floatfmt=floatfmt, index=show_index)
    protocol = df.attrs.get("protocol") or (df["protocol"].iloc[0] if "protocol" in df.columns and len(df) else "")
    lines = [f"**{title}**\n" if title else "", text, ""]
    if protocol:
        lines.append(f"_Protocol: {protocol} — {PROTOCOLS.get(protocol, protocol)}._")
    return "\n".join(line for line in lines if line is not None).strip() + "\n"
