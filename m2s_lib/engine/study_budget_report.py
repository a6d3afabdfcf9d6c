"""The report of a budget study (``m2s_lib.engine.study_budget``): the paired difference ``variant − baseline``
(M2SNet w/o L_f − MSNet) at each training budget, with its 95 % interval, per-seed points, the study's verdict per
budget and one sentence on the trend, all computed from the budget folders' ``runs.csv``.

It works on a study that is still running: a budget without finished pairs is shown as *pending*, one with some
as *partial*. The paired differences and verdicts are :func:`m2s_lib.engine.study_report.study_tables` of each
budget's runs (one home for the statistics).

Files written into the study folder (atomically): ``REPORT.md``, ``budget.csv`` (one row per budget and metric),
``budget_seeds.csv`` (per-seed differences), ``budget.png``, ``budget_table.md`` (the table and the trend sentences:
what docs/ablations.md quotes).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..atomic import write_bytes, write_text
from ..constants import runs_path
from .stats import CONTRADICTED, NOT_RESOLVED, SUPPORTED
from .study import VARIANTS, StudySpec, read_results
from .study_budget import budget_folder, read_budget
from .study_report import _png, scale_text, study_tables

__all__ = ["BudgetTables", "CAVEAT", "budget_tables", "budget_verdict_table", "trend_sentence", "budget_figure",
           "budget_snippet", "budget_markdown", "write_budget_report", "latest_budget_study"]

DIFF_METRICS = ("mDice", "mIoU")
CAVEAT = (
    "**Caveat: the teaching difficulty.** Every run trains a small random-init encoder on synthetic polyps of the "
    "*teaching* level, made to stand out so that a CPU run learns them in minutes. A gap that shrinks with the "
    "budget may only mean that both networks saturate on an easy task (their levels are the table's last "
    "columns), not that M2SNet catches up on real colonoscopy images; a gap that persists is a fact about this "
    "scale, not about the paper's Res2Net-50 at 352 px on real data. The verdicts are about this scale."
)


@dataclass
class BudgetTables:
    """``status``: one row per budget (runs done / expected, state); ``diffs``: per budget and metric the paired
    difference, interval and verdict; ``per_seed``: the difference of each seed; ``levels``: each variant's mean."""

    info: dict[str, Any]
    status: pd.DataFrame
    diffs: pd.DataFrame
    per_seed: pd.DataFrame
    levels: pd.DataFrame


def _state(done: int, expected: int) -> str:
    if done == 0:
        return "pending"
    return "complete" if done >= expected else f"partial ({done} of {expected} runs)"


def _budget_rows(steps: int, scores: pd.DataFrame, info: dict[str, Any]):
    """The status row, difference rows, per-seed rows and level rows of one budget's finished runs."""
    v, b = info["variant"], info["baseline"]
    scores = scores[scores["variant"].isin(info["variants"]) & scores["seed"].isin(info["seeds"])]
    off = sorted({int(s) for s in scores["steps"]} - {steps}) if "steps" in scores and len(scores) else []
    status = {"steps": steps, "runs": len(scores), "expected": len(info["variants"]) * len(info["seeds"]),
              "off_budget": off}
    status["state"] = _state(status["runs"], status["expected"])
    if scores.empty:
        return status, [], [], []
    summary, comparisons = study_tables(scores)
    pair = comparisons[(comparisons["variant"] == v) & (comparisons["baseline"] == b)]
    diffs = [{"steps": steps, **r} for r in pair[pair["metric"].isin(DIFF_METRICS)].to_dict("records")]
    wide = scores.pivot_table(index="seed", columns="variant", values=list(DIFF_METRICS))
    seeds = [{"steps": steps, "seed": int(s), "metric": m, "diff": float(wide.loc[s, (m, v)] - wide.loc[s, (m, b)])}
             for m in DIFF_METRICS for s in wide.index
             if {(m, v), (m, b)} <= set(wide.columns) and np.isfinite(wide.loc[s, (m, v)] - wide.loc[s, (m, b)])]
    levels = [{"steps": steps, **r} for r in summary[summary["metric"] == "mDice"].to_dict("records")]
    return status, diffs, seeds, levels


def budget_tables(out: str | os.PathLike) -> BudgetTables:
    """The budget study's tables from its folders (budgets without runs: state *pending*, no difference rows)."""
    info = read_budget(out)
    if info is None:
        raise FileNotFoundError(f"{out} holds no budget study (no budget.yaml): run `m2s ablations run --preset "
                                f"budget --out {out}` first")
    status, diffs, seeds, levels = [], [], [], []
    for steps in sorted(int(s) for s in info["steps"]):
        s, d, p, lv = _budget_rows(steps, read_results(budget_folder(out, steps)), info)
        status.append(s)
        diffs += d
        seeds += p
        levels += lv
    cols = ["steps", "table", "claim", "variant", "baseline", "direction", "metric", "n", "mean", "sd", "lo", "hi",
            "verdict"]
    return BudgetTables(info, pd.DataFrame(status), pd.DataFrame(diffs, columns=cols),
                        pd.DataFrame(seeds, columns=["steps", "seed", "metric", "diff"]),
                        pd.DataFrame(levels, columns=["steps", "variant", "metric", "n", "mean", "sd", "lo", "hi"]))


def _resolved_rows(diffs: pd.DataFrame, metric: str) -> pd.DataFrame:
    d = diffs[(diffs["metric"] == metric)] if len(diffs) else diffs
    return d[np.isfinite(d["lo"].astype(float))].sort_values("steps") if len(d) else d


def _ci(r) -> str:
    return f"{r['mean']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}]"


def trend_sentence(t: BudgetTables, metric: str = "mDice") -> str:
    """One sentence on how ``variant − baseline`` changes with the budget, generated from the numbers: the first and
    last budgets with an interval, the verdict at every budget, whether the end intervals overlap, what is pending."""
    rows = _resolved_rows(t.diffs, metric)
    pending = [int(s) for s, st in zip(t.status["steps"], t.status["state"]) if st != "complete"]
    tail = f" Budgets not complete yet: {', '.join(map(str, pending))} steps." if pending else ""
    if rows.empty:
        return f"No budget has a paired difference with an interval yet (≥ 2 seeds of both variants).{tail}"
    first, last = rows.iloc[0], rows.iloc[-1]
    if len(rows) == 1:
        return (f"Only {int(first['steps'])} steps can be read so far: Δ {metric} = {_ci(first)}, "
                f"{first['verdict']}; no trend yet.{tail}")
    m0, m1 = float(first["mean"]), float(last["mean"])
    change = ("changes sign" if np.sign(m0) != np.sign(m1) else "shrinks" if abs(m1) < abs(m0) else "grows")
    means = ", ".join(f"{m:+.3f}" for m in rows["mean"])
    verdicts = set(rows["verdict"])
    if verdicts == {CONTRADICTED}:
        reading = f"the claim is contradicted at every budget: the deficit persists up to {int(last['steps'])} steps"
    elif verdicts == {SUPPORTED}:
        reading = f"the claim is supported at every budget up to {int(last['steps'])} steps"
    else:
        reading = f"at {int(last['steps'])} steps the verdict is: {last['verdict']} ({_ci(last)})"
    overlap = first["lo"] <= last["hi"] and last["lo"] <= first["hi"]
    end = ("the two intervals overlap, so with these seeds the change itself is not established" if overlap else
           "the two intervals do not overlap")
    return (f"From {int(first['steps'])} to {int(last['steps'])} steps the mean paired gap in {metric} {change} "
            f"({means} by budget); {reading}; {end}.{tail}")


def budget_figure(t: BudgetTables):
    """Δ mDice and Δ mIoU against the budget (log axis): mean, 95 % band, per-seed points; and each variant's
    mean mDice (where the task saturates). Pending budgets are marked on the axis."""
    import matplotlib.pyplot as plt

    steps = sorted(int(s) for s in t.info["steps"])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    for ax, metric in zip(axes, DIFF_METRICS):
        rows = _resolved_rows(t.diffs, metric)
        if len(rows):
            ax.fill_between(rows["steps"], rows["lo"], rows["hi"], color="tab:blue", alpha=0.2, label="95 % interval")
            ax.plot(rows["steps"], rows["mean"], "o-", color="tab:blue", label="mean paired Δ")
        pts = t.per_seed[t.per_seed["metric"] == metric]
        for seed, g in pts.groupby("seed"):
            ax.scatter(g["steps"] * (1 + 0.03 * (seed - 1)), g["diff"], s=18, color="0.3", zorder=3,
                       label="seeds" if seed == pts["seed"].min() else None)
        ax.axhline(0, color="black", lw=0.8)
        ax.set(xscale="log", xlabel="optimiser steps (log)", ylabel=f"Δ {metric} ({t.info['variant']} − "
               f"{t.info['baseline']})", title=f"Paired Δ {metric} by training budget")
    lv = t.levels
    for key, g in (lv.groupby("variant", sort=False) if len(lv) else []):
        label = VARIANTS[key].label if key in VARIANTS else key
        axes[2].errorbar(g["steps"], g["mean"], yerr=[g["mean"] - g["lo"], g["hi"] - g["mean"]], fmt="o-",
                         capsize=3, label=label)
    axes[2].set(xscale="log", xlabel="optimiser steps (log)", ylabel="test mDice (mean, 95 % interval)",
                title="Each variant's level")
    done = set(t.status.loc[t.status["state"] != "pending", "steps"]) if len(t.status) else set()
    for ax in axes:
        ax.set_xlim(min(steps) / 1.25, max(steps) * 1.25)
        ax.set_xticks(steps, [f"{s}" if s in done else f"{s}\n(pending)" for s in steps])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return fig


def budget_verdict_table(t: BudgetTables) -> pd.DataFrame:
    rows = []
    for st in t.status.to_dict("records"):
        row: dict[str, Any] = {"steps": st["steps"], "runs": f"{st['runs']}/{st['expected']}", "state": st["state"]}
        for metric in DIFF_METRICS:
            d = t.diffs[(t.diffs["steps"] == st["steps"]) & (t.diffs["metric"] == metric)] if len(t.diffs) else []
            r = d.iloc[0] if len(d) else None
            row[f"Δ {metric} [95 % CI]"] = ("—" if r is None else _ci(r) if np.isfinite(r["lo"]) else
                                           f"{r['mean']:+.3f} (n={int(r['n'])}, no CI)")
            row[f"verdict ({metric})"] = "pending" if r is None else r["verdict"]
        seeds = t.per_seed[(t.per_seed["steps"] == st["steps"]) & (t.per_seed["metric"] == "mDice")]
        row["per-seed Δ mDice"] = ", ".join(f"s{int(s)}: {d:+.3f}"
                                            for s, d in zip(seeds["seed"], seeds["diff"])) or "—"
        for key in t.info["variants"]:
            lv = t.levels[(t.levels["steps"] == st["steps"]) & (t.levels["variant"] == key)] if len(t.levels) else []
            row[f"{key} mDice"] = f"{lv['mean'].iloc[0]:.3f}" if len(lv) else "—"
        rows.append(row)
    return pd.DataFrame(rows)


def _compute_text(out: Path, t: BudgetTables) -> str:
    frames = [read_results(budget_folder(out, s)) for s in t.status["steps"]]
    runs = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else None
    if runs is None:
        return "Compute: no finished run yet."
    reused = runs["reused_from"].notna() if "reused_from" in runs else pd.Series(False, index=runs.index)
    mine = runs[~reused]
    wall = (mine["train_s"].sum() + mine["eval_s"].sum()) / 60
    cpu = mine["cpu_s"].dropna().sum() / 60 if "cpu_s" in mine else float("nan")
    return (f"Compute of the {len(mine)} run(s) trained in this folder: {wall:.1f} min of training + scoring (wall "
            f"clock, summed over runs; `--jobs 2` runs two at once), {cpu:.1f} min of CPU time (one thread per run), "
            f"at a mean 1-min load average of {mine['load_1min'].mean():.1f}" + (
                f"; {int(reused.sum())} run(s) of the same fingerprint copied from another study folder." if
                reused.any() else "."))


def budget_snippet(t: BudgetTables) -> str:
    """The table and the two trend sentences (markdown): the part of the report that docs/ablations.md quotes."""
    return "\n".join([budget_verdict_table(t).to_markdown(index=False), "",
                      f"**Trend (mDice).** {trend_sentence(t, 'mDice')}", "",
                      f"**Trend (mIoU).** {trend_sentence(t, 'mIoU')}"])


def _epochs_text(spec: StudySpec, steps) -> str:
    from .study import variant_config
    from .study_budget import steps_per_epoch

    per_epoch = steps_per_epoch(variant_config(spec, spec.variants[0], spec.seeds[0]))
    return f"{per_epoch} steps per epoch: " + ", ".join(f"{s} steps = {int(s) // per_epoch} epochs" for s in steps)


def budget_markdown(out: Path, t: BudgetTables) -> str:
    info = t.info
    spec = StudySpec(**info["base_spec"])
    done, expected = int(t.status["runs"].sum()), int(t.status["expected"].sum())
    state = ("complete" if done >= expected else
             f"PARTIAL: {done} of {expected} runs finished (the same command continues it)")
    off = [f"{s['steps']} steps: runs made {s['off_budget']}" for s in t.status.to_dict("records") if s["off_budget"]]
    lines = [
        f"# Budget study: {info['variant']} − {info['baseline']} at {', '.join(map(str, info['steps']))} steps", "",
        f"Study folder `{out}` — {state}.", "",
        f"**What every run is.** The `{info['base']}` study's recipe at every budget, only the number of epochs "
        f"changed (the warm-up/decay schedule spans each run; {_epochs_text(spec, info['steps'])}). At the first "
        f"budget: {scale_text(spec)}" + (" (No variant of this study trains with L_f.)" if not any(
            VARIANTS[k].overrides.get("loss.lossnet_weight", 0) for k in info["variants"] if k in VARIANTS) else ""),
        "",
        "Paired difference per budget: the same seed gives both variants the same batches; mean and 95 % t interval "
        "over seeds; verdict on the paper's claim (the variant scores higher): *supported* / *contradicted* / "
        f"*{NOT_RESOLVED}*.", "", _compute_text(out, t), "",
        "## The difference at each budget", "", budget_snippet(t), "", "![budget study](budget.png)", "", CAVEAT, "",
    ]
    if off:
        lines += ["**Warning:** some runs did not make their budget's number of steps: " + "; ".join(off), ""]
    return "\n".join(lines)


def write_budget_report(out: str | os.PathLike) -> dict[str, Path]:
    """Write the budget report (and each budget folder's own study report); returns the paths."""
    import matplotlib

    from .study_report import write_report

    matplotlib.use("Agg", force=False)
    out = Path(out)
    t = budget_tables(out)
    for steps, runs in zip(t.status["steps"], t.status["runs"]):
        if runs:
            write_report(budget_folder(out, steps))
    paths = {"markdown": out / "REPORT.md", "table": out / "budget.csv", "seeds": out / "budget_seeds.csv",
             "figure": out / "budget.png", "snippet": out / "budget_table.md"}
    write_text(paths["table"], t.diffs.merge(t.status[["steps", "runs", "expected", "state"]], on="steps",
                                             how="right").to_csv(index=False))
    write_text(paths["seeds"], t.per_seed.to_csv(index=False))
    write_bytes(paths["figure"], _png(budget_figure(t)))
    write_text(paths["snippet"], budget_snippet(t) + "\n")
    write_text(paths["markdown"], budget_markdown(out, t))
    return paths


def latest_budget_study(root: str | os.PathLike | None = None, preset: str = "budget") -> Path | None:
    """The budget study of ``preset`` under ``root`` (default ``runs/ablations``) changed last; None when there is
    none."""
    found = [p.parent for p in Path(root or runs_path("ablations")).glob("*/budget.yaml")
             if (read_budget(p.parent) or {}).get("preset") == preset]
    return max(found, key=lambda p: max(q.stat().st_mtime for q in [p / "budget.yaml", *p.glob("*/runs.csv")]),
               default=None)
