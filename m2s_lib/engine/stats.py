"""Statistics of a seeded ablation study: per-variant confidence intervals, paired differences, verdicts.

A score table has one row per finished run (``variant``, ``seed`` and one column per metric, e.g. ``mDice``).

* :func:`summarise`: per variant and metric, the mean, the sample standard deviation (``ddof=1``) and a 95 %
  confidence interval of the mean over seeds, ``mean ± t_{0.975, n−1} · sd / √n`` (Student's t, ``scipy.stats``).
* :func:`paired_difference`: ``variant − baseline`` for the seeds both have (same seed = same initial data order
  and batches, so the seed's luck cancels), with the same t interval on the differences.
* :func:`verdict`: a claim of the paper, read against that interval. ``direction`` is +1 when the paper reports
  the variant higher than the baseline (for a metric where higher is better), −1 when lower, 0 when it reports
  them as close. The interval excludes 0 on the paper's side: *supported*; on the other side: *contradicted*;
  otherwise: *not resolved at this scale*. For a "close" claim (``direction=0``) an interval inside
  ``±equivalence`` supports it, one that excludes 0 contradicts it.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["SUPPORTED", "CONTRADICTED", "NOT_RESOLVED", "LOWER_IS_BETTER", "t_interval", "summarise",
           "paired_difference", "verdict"]

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
NOT_RESOLVED = "not resolved at this scale"
LOWER_IS_BETTER = frozenset({"MAE"})  # the metrics where a smaller value is the better one


def t_interval(values: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """``n``, ``mean``, ``sd`` (ddof 1), ``lo``/``hi``: the Student-t confidence interval of the mean.

    With fewer than two values the spread and the interval are undefined (NaN): one seed is not evidence.
    """
    x = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    n = int(x.size)
    mean = float(x.mean()) if n else math.nan
    if n < 2:
        return {"n": n, "mean": mean, "sd": math.nan, "lo": math.nan, "hi": math.nan}
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "lo": mean - half, "hi": mean + half}


def summarise(scores: pd.DataFrame, metrics: Sequence[str], level: float = 0.95) -> pd.DataFrame:
    """One row per (variant, metric): ``n, mean, sd, lo, hi`` over seeds (variants in first-seen order)."""
    rows = []
    for variant, group in scores.groupby("variant", sort=False):
        for metric in metrics:
            rows.append({"variant": variant, "metric": metric, **t_interval(group[metric].tolist(), level)})
    return pd.DataFrame(rows, columns=["variant", "metric", "n", "mean", "sd", "lo", "hi"])


def paired_difference(scores: pd.DataFrame, variant: str, baseline: str, metric: str,
                      level: float = 0.95) -> dict[str, float]:
    """``variant − baseline`` per shared seed, summarised by :func:`t_interval` (plus ``seeds``: the seeds used)."""
    a = scores[scores["variant"] == variant].set_index("seed")[metric]
    b = scores[scores["variant"] == baseline].set_index("seed")[metric]
    seeds = sorted(set(a.index) & set(b.index))
    diffs = [float(a[s] - b[s]) for s in seeds]
    return {**t_interval(diffs, level), "seeds": seeds}


def verdict(lo: float, hi: float, direction: int, metric: str = "mDice", equivalence: float = 0.01) -> str:
    """The paper's claim against the interval ``[lo, hi]`` of ``variant − baseline`` (see the module docstring).

    ``direction`` is stated for a higher-is-better reading; for a metric in :data:`LOWER_IS_BETTER` (MAE) the
    expected sign flips.
    """
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return NOT_RESOLVED
    if direction == 0:
        if lo > 0 or hi < 0:
            return CONTRADICTED
        return SUPPORTED if -equivalence <= lo and hi <= equivalence else NOT_RESOLVED
    sign = -direction if metric in LOWER_IS_BETTER else direction
    if (sign > 0 and lo > 0) or (sign < 0 and hi < 0):
        return SUPPORTED
    if (sign > 0 and hi < 0) or (sign < 0 and lo > 0):
        return CONTRADICTED
    return NOT_RESOLVED
