"""Reducers: seed replicas grouped by the swept axes. Plain pandas, tested on hand-written frames.

`reduce_seeds(summary, metric, axes)` groups the trials by every axis except `seed` and gives,
per group: `mean` and `std` of the metric over the seeds that completed (std with ddof = 1, the
sample standard deviation; NaN for a single seed), `n` (completed seeds), `n_diverged`,
`n_failed` and `n_trials`. Diverged and failed seeds never enter the mean: a diverged trial's
metrics are those of its last finite evaluation, not of a finished training. A group with no
completed seed has mean NaN and a `cell_status` saying why: `diverged`, `failed` or `missing`
(a grid point without any result yet) or `not measured` (outside a refined sweep's points);
otherwise `ok`.

`significance_table(summary, metric, axes)` tests each cell's gain over its A = 1 baseline,
paired by seed, with a 95% interval and Holm-adjusted p-values over the diagram's cells.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd

SEED = "seed"
DDOF = 1


def group_axes(axes, exclude=(SEED,)) -> list[str]:
    return [axis for axis in axes if axis not in exclude]


def comparable(value):
    """Grid values as the summary stores them: lists and mappings as JSON text."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def reduce_seeds(summary: pd.DataFrame, metric: str, axes: dict[str, list], cells=None) -> pd.DataFrame:
    """One row per combination of the non-seed axes of `axes` (column -> grid values), over the
    full grid, so points never run appear as `missing`. `cells`: the set of the sweep's
    combinations (tuples in the order of the non-seed axes), when it is not the whole product
    (a refined sweep): the others are `not measured`."""
    by = group_axes(axes)
    groups = {(): summary}
    if by:
        groups = {key: frame for key, frame in summary.groupby(by, dropna=False)}
    rows = []
    for key in itertools.product(*([comparable(v) for v in axes[axis]] for axis in by)):
        trials = groups.get(key, summary.iloc[0:0])
        reduced = reduce_group(trials, metric)
        if cells is not None and reduced["cell_status"] == "missing" and key not in cells:
            reduced["cell_status"] = "not measured"
        rows.append({**dict(zip(by, key)), **reduced})
    return pd.DataFrame(rows, columns=[*by, "mean", "std", "n", "n_diverged", "n_failed", "n_trials", "cell_status"])


def reduce_group(trials: pd.DataFrame, metric: str) -> dict:
    completed = trials.loc[trials["status"] == "completed", metric].astype(float) if len(trials) else pd.Series(dtype=float)
    n_diverged = int((trials["status"] == "diverged").sum()) if len(trials) else 0
    n_failed = int((trials["status"] == "failed").sum()) if len(trials) else 0
    if len(completed):
        status = "ok"
    elif n_diverged:
        status = "diverged"
    elif n_failed:
        status = "failed"
    else:
        status = "missing"
    return {
        "mean": completed.mean() if len(completed) else np.nan,
        "std": completed.std(ddof=DDOF) if len(completed) > DDOF else np.nan,
        "n": len(completed),
        "n_diverged": n_diverged,
        "n_failed": n_failed,
        "n_trials": len(trials),
        "cell_status": status,
    }


def metric_at_epoch(summary: pd.DataFrame, curves: pd.DataFrame, metric: str, epoch: int) -> pd.DataFrame:
    """The summary with `metric` replaced by its value at the last evaluation at or before
    `epoch` (a trial not evaluated by then gets NaN)."""
    early = curves.loc[curves["epoch"] <= epoch].sort_values("epoch").groupby("trial_id")[metric].last()
    out = summary.copy()
    out[metric] = out["trial_id"].map(early)
    return out


def gain_over_baseline(summary: pd.DataFrame, metric: str, axes, baseline: str = "amplitude", baseline_value=1.0) -> pd.DataFrame:
    """Per trial, `<metric>_gain` = metric - metric of the completed trial with `baseline` =
    baseline_value and every other axis equal (the same T and the same seed: paired, since both
    start from the same initialization). NaN without such a partner; 0 on the baseline rows.
    Reduce the result with reduce_seeds(..., metric + "_gain", axes)."""
    partners = [axis for axis in axes if axis != baseline]
    keyed = summary.assign(_all=0)
    reference = keyed.loc[(keyed[baseline] == baseline_value) & (keyed["status"] == "completed"), ["_all", *partners, metric]]
    merged = keyed.merge(reference.rename(columns={metric: "_baseline"}), on=["_all", *partners], how="left")
    merged[f"{metric}_gain"] = merged[metric] - merged["_baseline"]
    return merged.drop(columns=["_all", "_baseline"])


CONFIDENCE = 0.95


def t_interval(mean: float, std: float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The `confidence` interval of a mean over n values: mean +- t_{(1+confidence)/2, n-1} std / sqrt(n)
    (NaN with fewer than 2 values or no std)."""
    from scipy import stats

    if n < 2 or not np.isfinite(std):
        return math.nan, math.nan
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return mean - half, mean + half


def paired_gain_test(gains, confidence: float = CONFIDENCE) -> dict:
    """The paired t-test of per-seed gains (metric minus its A = 1 partner of the same seed):
    mean, std (ddof 1), n, the `confidence` interval mean +- t_{(1+confidence)/2, n-1} std / sqrt(n),
    and the two-sided p-value of mean = 0. With fewer than 2 seeds there is no test (NaN, and
    `test` says why); gains that are all equal give p = 0 when nonzero, 1 when zero."""
    from scipy import stats

    gains = np.asarray(gains, dtype=float)
    gains = gains[np.isfinite(gains)]
    n = len(gains)
    mean = float(gains.mean()) if n else math.nan
    if n < 2:
        return {"mean": mean, "std": math.nan, "n": n, "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan,
                "test": "too few seeds" if n else "no paired seeds"}
    std = float(gains.std(ddof=1))
    if std == 0:
        return {"mean": mean, "std": 0.0, "n": n, "ci_low": mean, "ci_high": mean, "p_value": 0.0 if mean else 1.0, "test": "paired t"}
    low, high = t_interval(mean, std, n, confidence)
    p_value = float(stats.ttest_1samp(gains, 0.0).pvalue)
    return {"mean": mean, "std": std, "n": n, "ci_low": low, "ci_high": high, "p_value": p_value, "test": "paired t"}


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of p-values (NaN stays NaN, out of the family): the i-th
    smallest of m becomes max over j <= i of min(1, (m - j + 1) p_(j)). It controls the
    probability of any false claim among the family, whatever the dependence between its tests."""
    p_values = np.asarray(p_values, dtype=float)
    adjusted = np.full(len(p_values), np.nan)
    tested = np.flatnonzero(np.isfinite(p_values))
    order = tested[np.argsort(p_values[tested], kind="stable")]
    m, running = len(order), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def significance_table(summary: pd.DataFrame, metric: str, axes, alpha: float = 1 - CONFIDENCE,
                       baseline: str = "amplitude", baseline_value=1.0) -> pd.DataFrame:
    """Per cell (every axis but seed), the paired test of its gain over the A = 1 cell at the same
    other axes (gain_over_baseline, then paired_gain_test), over the grid's cells; `p_adjusted` is
    Holm's over the cells tested (the baseline's own cells are not: their gain is 0 by
    construction), and `significant` means p_adjusted < alpha."""
    by = group_axes(axes)
    gains = gain_over_baseline(summary, metric, axes, baseline, baseline_value)
    gains = gains[gains["status"] == "completed"]
    grouped = {key if isinstance(key, tuple) else (key,): frame for key, frame in gains.groupby(by, dropna=False)} if by else {(): gains}
    rows = []
    for key in itertools.product(*([comparable(v) for v in axes[axis]] for axis in by)):
        cell = dict(zip(by, key))
        test = paired_gain_test(grouped.get(key, gains.iloc[0:0])[f"{metric}_gain"])
        if float(cell.get(baseline, math.nan)) == float(baseline_value):
            test.update(p_value=math.nan, test="baseline")
        rows.append({**cell, **test})
    table = pd.DataFrame(rows, columns=[*by, "mean", "std", "n", "ci_low", "ci_high", "p_value", "test"])
    table["p_adjusted"] = holm(table["p_value"])
    table["significant"] = table["p_adjusted"] < alpha
    table["correction"] = f"Holm over {int(table['p_value'].notna().sum())} cells"  # the figure's title names it
    return table


def curve_bands(curves: pd.DataFrame, summary: pd.DataFrame, axes, metric: str) -> pd.DataFrame:
    """Learning curves of completed trials grouped by the non-seed axes: per group and epoch,
    `mean`, `std` (ddof 1) and `n` of `metric` over seeds."""
    by = group_axes(axes)
    completed = summary.loc[summary["status"] == "completed", ["trial_id", *by]]
    joined = curves[["trial_id", "epoch", metric]].merge(completed, on="trial_id")
    grouped = joined.groupby([*by, "epoch"])[metric]
    return pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=DDOF), "n": grouped.size()}).reset_index()


def instability_threshold(steps, top_eigenvalue, jump: float = 0.1) -> dict:
    """The supplementary's instability threshold of the top Hessian eigenvalue.

    An instability is a maximal run of consecutive measurements at which the top eigenvalue moved
    by more than `jump` since the previous measurement; it starts at the run's first measurement
    and ends at its last. The threshold is the mean top eigenvalue at all starts and ends.
    Returns {"threshold": float (NaN without instabilities), "starts": [steps], "ends": [steps]}.
    """
    steps = np.asarray(steps)
    values = np.asarray(top_eigenvalue, dtype=float)
    keep = np.isfinite(values)
    steps, values = steps[keep], values[keep]
    jumped = np.abs(np.diff(values)) > jump
    starts, ends, marks = [], [], []
    index = 0
    while index < len(jumped):
        if not jumped[index]:
            index += 1
            continue
        last = index
        while last + 1 < len(jumped) and jumped[last + 1]:
            last += 1
        starts.append(int(steps[index + 1]))
        ends.append(int(steps[last + 1]))
        marks.extend([values[index + 1], values[last + 1]])
        index = last + 1
    return {"threshold": float(np.mean(marks)) if marks else float("nan"), "starts": starts, "ends": ends}


def suggest_learning_rates(learning_rate, accuracy, smoothing: float = 0.05) -> dict:
    """Base and maximum rates for a triangular cyclical schedule from a range test (Smith 2017):
    the accuracy is smoothed by a running mean over `smoothing` of the points; max_lr is the rate
    at its peak (beyond it accuracy stalls or falls); base_lr is the first rate at which it has
    risen a tenth of the way from its start to that peak (where learning takes off), or max_lr / 4
    when it never rises. Returns {"base_lr", "max_lr"}."""
    rates = np.asarray(learning_rate, dtype=float)
    values = np.asarray(accuracy, dtype=float)
    window = max(1, int(round(smoothing * len(values))))
    smooth = pd.Series(values).rolling(window, min_periods=1, center=True).mean().to_numpy()
    peak = int(np.nanargmax(smooth))
    rise = smooth[0] + 0.1 * (smooth[peak] - smooth[0])
    above = np.flatnonzero(smooth[: peak + 1] > rise)
    base = rates[above[0]] if len(above) and rates[above[0]] < rates[peak] else rates[peak] / 4
    return {"base_lr": float(base), "max_lr": float(rates[peak])}
