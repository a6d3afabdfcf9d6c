"""The report of an ablation study: per-variant table, paired comparisons with verdicts, early-training probe,
one figure. Everything is computed from the study folder's ``runs.csv`` and ``steps/`` (``m2s_lib.engine.study``),
so it can be rewritten at any time, also for a study that is still running (its table then says how many seeds
each row has).

Files written into the study folder (atomically): ``REPORT.md``, ``summary.csv``, ``comparisons.csv``,
``early.csv``, ``ablations.png``.
"""
from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ..atomic import write_bytes, write_text
from ..constants import runs_path
from .stats import NOT_RESOLVED, paired_difference, summarise, verdict
from .study import COMPARISONS, METRICS, VARIANTS, StudySpec, read_results, variant_config

__all__ = ["study_tables", "wide_summary", "comparison_lines", "early_table", "early_tables", "early_summary", "early_paired",
           "early_figure", "scale_text", "report_markdown", "write_report", "latest_study"]


def _label(key: str) -> str:
    v = VARIANTS.get(key)
    return v.label if v else key


def study_tables(scores: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(summary, comparisons)``: per variant and metric the t interval over seeds; per claim and metric the
    paired difference ``variant − baseline`` with its interval and verdict."""
    summary = summarise(scores, METRICS)
    present = set(scores["variant"])
    rows = []
    for c in COMPARISONS:
        if c.variant not in present or c.baseline not in present:
            continue
        for metric in METRICS:
            d = paired_difference(scores, c.variant, c.baseline, metric)
            rows.append({"table": c.table, "claim": c.claim, "variant": c.variant, "baseline": c.baseline,
                         "direction": c.direction, "metric": metric, "n": d["n"], "mean": d["mean"], "sd": d["sd"],
                         "lo": d["lo"], "hi": d["hi"], "verdict": verdict(d["lo"], d["hi"], c.direction, metric)})
    cols = ["table", "claim", "variant", "baseline", "direction", "metric", "n", "mean", "sd", "lo", "hi", "verdict"]
    return summary, pd.DataFrame(rows, columns=cols)


def early_table(out: str | os.PathLike) -> pd.DataFrame:
    """The probe rows of every run (``steps/<variant>-s<seed>.csv``), with ``variant`` and ``seed`` columns."""
    frames = []
    for path in sorted(Path(out, "steps").glob("*-s*.csv")):
        key, _, seed = path.stem.rpartition("-s")
        df = pd.read_csv(path)
        df.insert(0, "seed", int(seed))
        df.insert(0, "variant", key)
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def early_tables(folders: Sequence[str | os.PathLike | None]) -> pd.DataFrame:
    """:func:`early_table` of several study folders together; a (variant, seed) found twice keeps its longest run
    (its first steps are the same: same seed, same batches, same schedule)."""
    frames = [early_table(f) for f in folders if f is not None and Path(f, "steps").is_dir()]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    both = pd.concat(frames, ignore_index=True)
    longest = both.groupby(["variant", "seed"])["step"].transform("max")
    both = both[both["step"] <= longest]
    return both.drop_duplicates(subset=["variant", "seed", "step"], keep="first").reset_index(drop=True)


def _read_spec(out: Path) -> StudySpec | None:
    path = out / "study.yaml"
    if not path.is_file():
        return None
    return StudySpec(**(yaml.safe_load(path.read_text()) or {}))


def scale_text(spec: StudySpec) -> str:
    """One paragraph: what every run of the study is (recipe, data, VGG weights of L_f)."""
    from .study import lossnet_weights_note

    key = spec.variants[0]
    cfg = variant_config(spec, key, spec.seeds[0])
    d, o, m = cfg.data, cfg.optim, cfg.model
    data = (f"the dataset at {d.root}" if d.root else
            f"synthetic polyps ({d.synthetic_difficulty} level, {d.synthetic_n} training images at "
            f"{d.synthetic_size} px, {5 * d.synthetic_n_test} test images in 5 sets)")
    steps = f", at most {cfg.run.max_steps_per_epoch} steps per epoch" if cfg.run.max_steps_per_epoch else ""
    return (f"profile `{spec.profile}`: {m.encoder_name} ({m.encoder_weights or 'random init'}), {m.channels}-channel "
            f"head, {o.optimizer.upper()} lr {o.lr:g}, {o.epochs} epochs{steps} of batch {o.batch_size}, training sizes "
            f"{list(d.train_sizes) or [d.size]} px, test at {d.eval_size} px; {data}. L_f uses "
            f"{lossnet_weights_note(cfg)}, weight {VARIANTS['m2snet'].overrides['loss.lossnet_weight']} (the authors'), "
            f"input {cfg.loss.lossnet_input_size} px. Seeds {spec.seeds}; same seed = same batches in every variant.")


def _fmt(row: pd.Series) -> str:
    if not np.isfinite(row["lo"]):
        return f"{row['mean']:.3f} (n={int(row['n'])}, no CI)"
    return f"{row['mean']:.3f} ± {row['sd']:.3f} [{row['lo']:.3f}, {row['hi']:.3f}]"


def wide_summary(summary: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for key, g in summary.groupby("variant", sort=False):
        g = g.set_index("metric")
        rows.append({"variant": _label(key), "key": key, "table": VARIANTS[key].table if key in VARIANTS else "",
                     "seeds": int(g.loc["mDice", "n"]), **{m: _fmt(g.loc[m]) for m in METRICS}})
    return pd.DataFrame(rows)


def comparison_lines(comparisons: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (claim, variant, baseline), g in comparisons.groupby(["claim", "variant", "baseline"], sort=False):
        g = g.set_index("metric")
        cell = {m: (f"{g.loc[m, 'mean']:+.3f} [{g.loc[m, 'lo']:+.3f}, {g.loc[m, 'hi']:+.3f}]"
                    if np.isfinite(g.loc[m, "lo"]) else f"{g.loc[m, 'mean']:+.3f} (no CI)") for m in METRICS}
        short = {NOT_RESOLVED: "not resolved"}
        rows.append({"claim (paper)": f"{claim} [{g['table'].iloc[0]}]", "difference": f"{variant} − {baseline}",
                     "seeds": int(g.loc["mDice", "n"]), "Δ mDice [95 % CI]": cell["mDice"],
                     "verdict (mDice)": g.loc["mDice", "verdict"], "Δ mIoU": cell["mIoU"], "Δ MAE": cell["MAE"],
                     "verdict (mIoU / MAE)": " / ".join(short.get(g.loc[m, "verdict"], g.loc[m, "verdict"])
                                                       for m in ("mIoU", "MAE"))})
    return pd.DataFrame(rows)


def early_summary(early: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds, per variant and probe step, of the probe's Dice (both BatchNorm modes) and F_k terms."""
    if early.empty or "dice_eval" not in early:
        return pd.DataFrame()
    probed = early.dropna(subset=["dice_eval"])
    cols = [c for c in probed.columns if c.startswith(("dice_", "term"))]
    return probed.groupby(["variant", "step"], sort=False)[cols].mean().reset_index()


def _loss_at(early: pd.DataFrame, steps=(10, 25, 50, 100, 200)) -> pd.DataFrame:
    """Training loss averaged over a window of 10 steps ending at each step, mean over seeds."""
    if early.empty:
        return pd.DataFrame()
    rows = []
    for key, g in early.groupby("variant", sort=False):
        row: dict[str, Any] = {"variant": key}
        for s in steps:
            w = g[(g["step"] > s - 10) & (g["step"] <= s)]
            row[f"loss@{s}"] = float(w["loss"].mean()) if len(w) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def early_paired(early: pd.DataFrame, variant: str = "m2snet-nolf", baseline: str = "msnet",
                 steps=(10, 25, 50, 100, 200, 300)) -> pd.DataFrame:
    """``variant − baseline`` per seed, as paired t intervals: the training loss averaged over the 10 steps ending at
    each step, and the probe's Dice in both BatchNorm modes at each probe step."""
    if early.empty or not {variant, baseline} <= set(early["variant"]):
        return pd.DataFrame()
    per_run = []
    for (key, seed), g in early[early["variant"].isin([variant, baseline])].groupby(["variant", "seed"]):
        row: dict[str, Any] = {"variant": key, "seed": seed}
        for s in steps:
            w = g[(g["step"] > s - 10) & (g["step"] <= s)]["loss"]
            row[f"loss@{s}"] = float(w.mean()) if len(w) else np.nan
            at = g[g["step"] == s]
            for mode in ("eval", "batch"):
                col = f"dice_{mode}"
                row[f"{col}@{s}"] = float(at[col].iloc[0]) if col in at and len(at) and at[col].notna().any() else np.nan
        per_run.append(row)
    table = pd.DataFrame(per_run)
    rows = []
    for col in [c for c in table.columns if "@" in c]:
        if table[col].notna().sum() == 0:
            continue
        d = paired_difference(table, variant, baseline, col)
        if d["n"] == 0:
            continue
        measure, step = col.split("@")
        rows.append({"measure": measure, "step": int(step), "n": d["n"], "diff": d["mean"], "lo": d["lo"],
                     "hi": d["hi"], f"{variant}": float(table.loc[table["variant"] == variant, col].mean()),
                     f"{baseline}": float(table.loc[table["variant"] == baseline, col].mean())})
    return pd.DataFrame(rows).sort_values(["measure", "step"]).reset_index(drop=True)


def early_figure(early: pd.DataFrame, variants: Sequence[str] | None = None):
    """Three panels over the training steps (mean over seeds): the training loss (10-step moving average), the
    probe's Dice with running vs batch BatchNorm statistics, and the F_k terms' size relative to |up A − B|."""
    import matplotlib.pyplot as plt

    keys = [k for k in (variants or early["variant"].unique()) if k in set(early["variant"])]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), layout="constrained")
    colors = dict(zip(keys, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for key in keys:
        g = early[early["variant"] == key]
        curves = g.pivot_table(index="step", columns="seed", values="loss").rolling(10, min_periods=1).mean()
        axes[0].plot(curves.index, curves.mean(axis=1), color=colors[key], label=f"{_label(key)} ({curves.shape[1]} seeds)")
        axes[0].fill_between(curves.index, curves.min(axis=1), curves.max(axis=1), color=colors[key], alpha=0.15)
        probed = g.dropna(subset=["dice_eval"]).groupby("step").mean(numeric_only=True)
        axes[1].plot(probed.index, probed["dice_eval"], "o-", color=colors[key], label=f"{_label(key)}: running stats")
        axes[1].plot(probed.index, probed["dice_batch"], "s--", color=colors[key], alpha=0.6, label="… batch stats")
        for k, marker in ((3, "^"), (5, "v")):
            for mode, style in (("eval", "-"), ("batch", ":")):
                col = f"term{k}_{mode}"
                if col in probed and probed[col].notna().any():
                    ratio = probed[col] / probed[f"term1_{mode}"]
                    axes[2].plot(probed.index, ratio, marker=marker, ls=style, color=colors[key],
                                 label=f"{_label(key)}: F{k}/F1 ({'running' if mode == 'eval' else 'batch'})")
    axes[0].set(xlabel="optimiser step", ylabel="training loss (10-step mean)", title="Training loss (band: seeds)")
    axes[1].set(xlabel="optimiser step", ylabel="Dice (p > 0.5), 20 test images", ylim=(0, 1),
                title="Probe: BatchNorm running vs batch statistics")
    axes[2].set(xlabel="optimiser step", ylabel="mean |F_k(up A) − F_k(B)| / mean |up A − B|", yscale="log",
                title="Size of the box-sum terms")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def report_markdown(out: Path, spec: StudySpec, scores: pd.DataFrame, summary: pd.DataFrame,
                    comparisons: pd.DataFrame, early: pd.DataFrame) -> str:
    expected = len(spec.variants) * len(spec.seeds)
    finished = len(scores)
    state = ("complete" if finished >= expected else
             f"PARTIAL: {finished} of {expected} runs finished (run the same command again to continue)")
    wall = ""
    if finished:
        train = scores["train_s"].sum() + scores["eval_s"].sum()
        cpu = scores["cpu_s"].dropna() if "cpu_s" in scores else pd.Series(dtype=float)
        cpu_text = (f" CPU time (the load-independent cost, one thread per run): {cpu.sum() / 60:.1f} min over the "
                    f"{len(cpu)} run(s) that record it, {cpu.mean():.0f} s per run on average." if len(cpu) else "")
        wall = (f"Compute: {train / 60:.1f} min of training + scoring (wall clock) summed over runs, at a mean 1-min "
                f"load average of {scores['load_1min'].mean():.1f} on {os.cpu_count()} cores; last run finished "
                f"{scores['finished_utc'].iloc[-1]}.{cpu_text}")
    lines = [
        "# Ablation study (Tables 9–11): seeded, paired, with 95 % confidence intervals", "",
        f"Study folder `{out}` — {state}.", "",
        f"**What every run is.** {scale_text(spec)}", "",
        "Scores: PraNet protocol (Dice and IoU averaged over 256 thresholds, MAE), pooled over all test images; "
        "per variant the mean ± sd over seeds and the 95 % t confidence interval of the mean [lo, hi]. "
        "Comparisons: the paired difference variant − baseline (same seed), its mean and 95 % t interval. Verdict: "
        "the interval excludes 0 on the paper's side = *supported*, on the other side = *contradicted*, otherwise "
        "*not resolved at this scale* (for a claim of closeness: inside ±0.01 = supported). These are verdicts about "
        "this scale (small encoder from scratch, synthetic data), not about the paper's setting.", "",
        wall, "", "## Per variant", "",
        wide_summary(summary).to_markdown(index=False) if len(summary) else "(no finished run yet)", "",
        "## The paper's claims, as paired differences", "",
        comparison_lines(comparisons).to_markdown(index=False) if len(comparisons) else "(no comparable pair yet)",
        "", "![ablations](ablations.png)", "",
    ]
    early_sum = early_summary(early)
    if len(early_sum):
        lines += ["## Early training (probe on 20 test images; mean over seeds)", "",
                  "`dice_eval`: Dice of p > 0.5 with BatchNorm running statistics (test-time behaviour); "
                  "`dice_batch`: the same network with batch statistics. `term<k>`: mean |F_k(up A) − F_k(B)| over "
                  "the subtraction units (k = 1: |up A − B|).", "",
                  early_sum.round(4).to_markdown(index=False), "", _loss_at(early).round(4).to_markdown(index=False), ""]
        paired = early_paired(early)
        if len(paired):
            lines += ["Paired (same seed) M2SNet w/o L_f − MSNet, 95 % t interval:", "",
                      paired.round(4).to_markdown(index=False), "", "![early training](early.png)", ""]
    return "\n".join(lines)


def _figure(scores: pd.DataFrame, comparisons: pd.DataFrame, summary: pd.DataFrame) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import seaborn as sns

    dice = summary[summary["metric"] == "mDice"].reset_index(drop=True)
    comp = comparisons[comparisons["metric"] == "mDice"].reset_index(drop=True)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 0.5 * max(len(dice), len(comp), 3) + 1.8), layout="constrained")
    order = list(dice["variant"])
    sns.stripplot(data=scores, y="variant", x="mDice", order=order, ax=ax, color="0.35", size=5, jitter=0.12)
    for i, row in dice.iterrows():
        ax.plot([row["lo"], row["hi"]], [i, i], color="tab:blue", lw=3, alpha=0.6)
        ax.plot(row["mean"], i, "D", color="tab:blue")
    ax.set(yticks=range(len(order)), yticklabels=[_label(k) for k in order], ylabel="",
           xlabel="test mDice (PraNet protocol); dots: seeds; bar: 95 % CI", title="Per variant")
    ax.grid(axis="x", alpha=0.3)
    colors = {"supported": "tab:green", "contradicted": "tab:red"}
    for i, row in comp.iterrows():
        c = colors.get(row["verdict"], "tab:gray")
        if np.isfinite(row["lo"]):
            bx.plot([row["lo"], row["hi"]], [i, i], color=c, lw=3, alpha=0.7)
        bx.plot(row["mean"], i, "o", color=c)
    bx.axvline(0, color="black", lw=0.8)
    bx.set(yticks=range(len(comp)), yticklabels=[f"{r.variant} − {r.baseline}" for r in comp.itertuples()],
           xlabel="paired Δ mDice, 95 % CI\n(green: supports the paper, red: contradicts it, grey: not resolved)",
           title="The paper's claims")
    bx.invert_yaxis()
    bx.grid(axis="x", alpha=0.3)
    return _png(fig)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_report(out: str | os.PathLike) -> dict[str, Path]:
    """Write the report files of the study in ``out``; returns their paths (``markdown``, ``summary`` ...)."""
    out = Path(out)
    spec = _read_spec(out)
    if spec is None:
        raise FileNotFoundError(f"{out} holds no study (no study.yaml): run `m2s ablations run --out {out}` first")
    scores = read_results(out)
    summary, comparisons = study_tables(scores) if len(scores) else (pd.DataFrame(), pd.DataFrame())
    early = early_table(out)
    paths = {"markdown": out / "REPORT.md", "summary": out / "summary.csv", "comparisons": out / "comparisons.csv",
             "early": out / "early.csv", "figure": out / "ablations.png"}
    write_text(paths["summary"], summary.to_csv(index=False))
    write_text(paths["comparisons"], comparisons.to_csv(index=False))
    write_text(paths["early"], early_summary(early).to_csv(index=False))
    if len(scores):
        write_bytes(paths["figure"], _figure(scores, comparisons, summary))
    if len(early) and "dice_eval" in early:
        write_bytes(out / "early.png", _png(early_figure(early)))
    write_text(paths["markdown"], report_markdown(out, spec, scores, summary, comparisons, early))
    return paths


def latest_study(root: str | os.PathLike | None = None) -> Path | None:
    """The study folder under ``root`` whose ``runs.csv`` changed last, smoke studies left out (None: none)."""
    found = sorted(Path(root or runs_path("ablations")).glob("*/runs.csv"), key=lambda p: p.stat().st_mtime)
    found = [p.parent for p in found if (spec := _read_spec(p.parent)) is not None and spec.preset != "smoke"
             and spec.stop_after_epoch is None]  # neither smoke runs nor cut (early-training) runs
    return found[-1] if found else None
