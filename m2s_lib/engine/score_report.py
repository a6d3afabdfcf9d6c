"""What ``m2s score`` writes: the paper's Table 1 layout, the per-image scores, the paired comparison, a figure.

Paired comparison (:func:`paired_differences`): for a method A against a baseline B (or every pair, A listed
before B), the per-image difference ``Dice_A − Dice_B`` on each test set (the same images, each image its own
control), summarised by the mean and a 95 % Student-t interval of the mean over images
(:func:`m2s_lib.engine.stats.t_interval`, the ablation study's interval). Verdict, in the study's words
(:func:`m2s_lib.engine.stats.verdict`), on the claim "A scores a higher Dice than B": *supported* when the
interval lies above 0, *contradicted* when below, *not resolved at this scale* otherwise. Why t and not a
bootstrap: the differences are bounded (−1 … 1) and a test set has 60–600 images, where the t interval of a mean
is accurate; it is deterministic (no resampling seed), and it is the one interval the study already uses. Images
are treated as independent; frames of one video (CVC-ClinicDB, CVC-ColonDB) are not, so the interval is then
too narrow — read it as a lower bound on the uncertainty.
"""
from __future__ import annotations

import io
import itertools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_bytes, write_text
from ..metrics import POLYP_COLUMNS, PROTOCOLS
from .run_folder import OUTPUTS_MANIFEST, RunExistsError, prepare_output_dir
from .stats import t_interval, verdict

__all__ = ["POOLED", "SCORE_OUTPUTS", "check_out", "paired_differences", "results_markdown", "score_figure", "write_outputs"]

SCORE_OUTPUTS = ("results.csv", "results.md", "per_image", "paired.csv", "input_report.csv", "score.png")
POOLED = "all sets (pooled)"
PAIRED_COLUMNS = ("dataset", "method", "baseline", "metric", "n", "method_mean", "baseline_mean", "diff", "sd",
                  "lo", "hi", "verdict", "better", "worse", "tied")


def check_out(out: str | os.PathLike, overwrite: bool) -> Path:
    """The output rule of ``m2s score``, checked before any scoring (nothing is written): a folder that exists and
    is not empty is refused unless ``overwrite``; with it, a folder that another command wrote is still refused.
    :func:`write_outputs` then replaces only an earlier ``m2s score``'s outputs (``prepare_output_dir``'s rule)."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file: choose a folder")
    content = [p.name for p in out.iterdir()] if out.is_dir() else []
    if content and not overwrite:
        shown = ", ".join(sorted(content)[:4]) + (" …" if len(content) > 4 else "")
        raise RunExistsError(f"--out {out} is not empty ({shown}): choose a new folder, or pass --overwrite to "
                             "replace an earlier `m2s score`'s outputs there (nothing else is touched)")
    manifest = out / OUTPUTS_MANIFEST
    if manifest.is_file():
        try:
            command = json.loads(manifest.read_text()).get("command")
        except (ValueError, AttributeError):
            command = None
        if command != "score":
            raise RunExistsError(f"--out {out} holds the outputs of `m2s {command}` ({OUTPUTS_MANIFEST}): choose "
                                 "another folder for `m2s score`")
    return out


def _pooled(per_image: Mapping[tuple[str, str], pd.DataFrame], method: str, datasets: Sequence[str]) -> pd.DataFrame:
    return pd.concat([per_image[(method, d)].assign(dataset=d) for d in datasets], ignore_index=True)


def paired_differences(per_image: Mapping[tuple[str, str], pd.DataFrame], methods: Sequence[str],
                       datasets: Sequence[str], baseline: str | None = None, metric: str = "mDice",
                       level: float = 0.95) -> pd.DataFrame:
    """Per test set (and pooled over the sets): ``method − baseline`` of the per-image ``metric`` on the shared
    images; ``n, diff`` (mean), ``sd``, ``lo``/``hi`` (Student-t interval), ``verdict`` and how many images got
    better / worse / tied (see the module docstring). Pairs: each method against ``baseline``, or every pair."""
    pairs = ([(m, baseline) for m in methods if m != baseline] if baseline is not None
             else list(itertools.combinations(methods, 2)))
    rows = []
    for a, b in pairs:
        groups = [(d, [d]) for d in datasets] + ([(POOLED, list(datasets))] if len(datasets) > 1 else [])
        for label, sets in groups:
            merged = _pooled(per_image, a, sets).merge(_pooled(per_image, b, sets), on=["dataset", "name"],
                                                       suffixes=("_a", "_b"))
            diff = (merged[f"{metric}_a"] - merged[f"{metric}_b"]).to_numpy(dtype=float)
            ci = t_interval(diff.tolist(), level)
            rows.append({"dataset": label, "method": a, "baseline": b, "metric": metric, "n": ci["n"],
                         "method_mean": float(merged[f"{metric}_a"].mean()),
                         "baseline_mean": float(merged[f"{metric}_b"].mean()), "diff": ci["mean"], "sd": ci["sd"],
                         "lo": ci["lo"], "hi": ci["hi"], "verdict": verdict(ci["lo"], ci["hi"], +1, metric),
                         "better": int((diff > 0).sum()), "worse": int((diff < 0).sum()),
                         "tied": int((diff == 0).sum())})
    return pd.DataFrame(rows, columns=list(PAIRED_COLUMNS))


# ---------------------------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------------------------
def _fmt(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if np.isfinite(x) else "–"


def table1_blocks(results: pd.DataFrame) -> list[str]:
    """The paper's Table 1 layout: one block per test set, one row per method, mDice … MAE."""
    lines = []
    for dataset, group in results.groupby("dataset", sort=False):
        n = ", ".join(sorted({str(v) for v in group["n"]}))
        missing = int(group["missing"].sum())
        note = f"; {missing} missing maps scored as all-zero" if missing else ""
        lines += [f"### {dataset} (n = {n}{note})", "", "| method | " + " | ".join(POLYP_COLUMNS) + " |",
                  "|---|" + "---:|" * len(POLYP_COLUMNS)]
        for row in group.itertuples(index=False):
            values = " | ".join(_fmt(getattr(row, c)) for c in POLYP_COLUMNS)
            lines.append(f"| {row.method} | {values} |")
        lines.append("")
    return lines


def paired_lines(paired: pd.DataFrame) -> list[str]:
    """The paired comparison as a markdown table (Δ = method − baseline, per-image Dice)."""
    if not len(paired):
        return ["(one method: nothing to compare)", ""]
    lines = ["| test set | method − baseline | n | Δ mean | 95 % t interval | verdict | better / worse / tied |",
             "|---|---|---:|---:|---|---|---|"]
    for r in paired.itertuples(index=False):
        lines.append(f"| {r.dataset} | {r.method} − {r.baseline} | {r.n} | {r.diff:+.4f} | "
                     f"[{r.lo:+.4f}, {r.hi:+.4f}] | {r.verdict} | {r.better} / {r.worse} / {r.tied} |")
    return [*lines, ""]


def results_markdown(result) -> str:
    """``results.md``: Table 1 blocks, the paired comparison, the input report, the protocol named."""
    protocol = result.protocol
    sources = [f"- {name}: `{folder}`" for name, folder in result.sources.items()]
    claim = (f"each method against the baseline **{result.baseline}**" if result.baseline
             else "every pair of methods, in the order given")
    lines = [f"# Scores of prediction maps — protocol `{protocol}`", "",
             f"_Protocol {protocol}: {PROTOCOLS[protocol]}._", "", *sources, "",
             "## Table 1 layout", "", *table1_blocks(result.results),
             "## Paired differences of per-image Dice", "",
             f"Δ = method − baseline per image, {claim}; mean over the images and its 95 % Student-t interval. Verdict "
             "on the claim \"the method scores a higher Dice than the baseline\": interval above 0 = *supported*, "
             "below 0 = *contradicted*, otherwise *not resolved at this scale*.", "",
             *paired_lines(result.paired), "![scores](score.png)", "", "## Inputs", ""]
    if len(result.report):
        lines += [f"- {m}" for m in result.report["message"]]
    else:
        lines.append("- every test image had exactly one map of the mask's size; nothing was missing or extra")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Figure
# ---------------------------------------------------------------------------------------------------------------
def score_figure(result, metric: str = "mDice") -> bytes:
    """PNG: per-set bars (mean per-image Dice ± 95 % t interval), the paired Δ intervals, and the per-image
    scatter of the first compared pair (method against baseline)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    methods, datasets = result.methods, result.datasets
    panels = 3 if len(result.paired) else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.6 * panels, 4.4), layout="constrained", squeeze=False)
    ax = axes[0][0]
    width = 0.8 / len(methods)
    x = np.arange(len(datasets))
    for k, method in enumerate(methods):
        cis = [t_interval(result.per_image[(method, d)][metric].tolist()) for d in datasets]
        means = np.array([c["mean"] for c in cis])
        err = np.nan_to_num(np.array([[c["mean"] - c["lo"] for c in cis], [c["hi"] - c["mean"] for c in cis]]))
        ax.bar(x - 0.4 + width * (k + 0.5), means, width, yerr=err, capsize=3, label=method)
    ax.set(xticks=x, ylim=(0, 1.05), ylabel=f"{metric} (mean per image) ± 95 % t interval", title="Per test set")
    ax.set_xticklabels(datasets, rotation=20, ha="right", fontsize=8)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    if panels == 3:
        _paired_panel(axes[0][1], result.paired, metric)
        _scatter_panel(axes[0][2], result, metric)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _paired_panel(ax, paired: pd.DataFrame, metric: str) -> None:
    colors = {"supported": "tab:green", "contradicted": "tab:red"}
    labels = []
    for i, r in enumerate(paired.itertuples(index=False)):
        c = colors.get(r.verdict, "tab:gray")
        if np.isfinite(r.lo):
            ax.plot([r.lo, r.hi], [i, i], color=c, lw=3, alpha=0.7)
        ax.plot(r.diff, i, "o", color=c)
        labels.append(f"{r.dataset}: {r.method} − {r.baseline}")
    ax.axvline(0, color="black", lw=0.8)
    ax.set(yticks=range(len(labels)), xlabel=f"paired Δ {metric} per image, mean and 95 % t interval",
           title="Paired differences\n(green: higher, red: lower, grey: not resolved)")
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)


def _scatter_panel(ax, result, metric: str) -> None:
    first = result.paired.iloc[0]
    a, b = first["method"], first["baseline"]
    for d in result.datasets:
        merged = result.per_image[(a, d)].merge(result.per_image[(b, d)], on="name", suffixes=("_a", "_b"))
        ax.scatter(merged[f"{metric}_b"], merged[f"{metric}_a"], s=12, alpha=0.7, label=d)
    ax.plot([0, 1], [0, 1], color="gray", lw=1, ls="--")
    ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel=f"{b}: {metric} per image", ylabel=f"{a}: {metric} per image",
           title=f"Per image: {a} against {b}\n(above the line: {a} better)")
    ax.legend(fontsize=7, loc="lower right")


# ---------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------
def write_outputs(result, out: str | os.PathLike) -> dict[str, Path]:
    """Write every output of ``m2s score`` in ``out`` (atomically, file by file); returns their paths."""
    out = prepare_output_dir(out, "score", SCORE_OUTPUTS, overwrite=True)  # after check_out: own outputs only
    paths = {name: out / name for name in ("results.csv", "results.md", "paired.csv", "input_report.csv", "score.png")}
    write_text(paths["results.csv"], result.results.to_csv(index=False))
    for (method, dataset), frame in result.per_image.items():
        write_text(out / "per_image" / _safe(method) / f"{dataset}.csv", frame.to_csv(index=False))
    write_text(paths["paired.csv"], result.paired.to_csv(index=False))
    write_text(paths["input_report.csv"], result.report.to_csv(index=False))
    write_bytes(paths["score.png"], score_figure(result))
    write_text(paths["results.md"], results_markdown(result))
    return paths


def _safe(name: str) -> str:
    """A method name as a folder name (path separators and leading dots replaced)."""
    cleaned = "".join("_" if ch in '/\\:*?"<>|' else ch for ch in name).lstrip(".")
    return cleaned or "_"

