"""The notebook API: each function takes a results directory (or a loaded Results) and returns
a matplotlib Figure to restyle or save; each `*_table` function returns the reduced DataFrame
that its figure draws.

    from tiltsweep.analysis import plots
    figure = plots.phase_diagram("results/quickstart")                  # val_accuracy over (T, A)
    figure = plots.phase_diagram("results/spiral-phase-diagrams", x="model.width", y="amplitude")
    figure = plots.phase_diagram("results/quickstart", gain=True)       # minus the A = 1 row
    figure = plots.std_band("results/supp-fig4-wrn-cifar10")            # against amplitude
    figure = plots.learning_curves("results/supp-fig2-3-myrtle5-cifar10")
    figure = plots.trajectory("results/quickstart", trial_id)           # one trial's Fig. 4 panels
    figure = plots.hessian_trajectory("results/fig4-bifurcations")      # the supplementary's Fig. 1
    figure = plots.side_by_side("results/digits-two-oscillations")    # one panel per sub-grid
"""

from __future__ import annotations

import json
import os
from typing import Optional, Union

import pandas as pd

from tiltsweep.analysis import figures
from tiltsweep.analysis.figures import Figure
from tiltsweep.analysis.load import Results, load_results, num_classes
from tiltsweep.analysis.reduce import (
    SEED, curve_bands, gain_over_baseline, group_axes, instability_threshold, metric_at_epoch, reduce_seeds, significance_table,
)
from tiltsweep.trainers.config import LossConfig


class PlotError(ValueError):
    pass


Source = Union[str, os.PathLike, Results]


def as_results(source: Source) -> Results:
    return source if isinstance(source, Results) else load_results(source)


def metric_label(metric: str, epoch: Optional[int] = None) -> str:
    if epoch is not None:
        return f"{metric} at epoch {epoch}"
    return metric if metric.startswith("best") else f"final {metric}"


def trials_with(results: Results, metric: str, epoch: Optional[int]) -> pd.DataFrame:
    """The summary, with `metric` taken at `epoch` when one is given."""
    summary = results.summary
    if summary.empty:
        raise PlotError(f"{results.directory}: no finished trials to plot yet")
    if metric not in summary.columns:
        numeric = [c for c in summary.columns if pd.api.types.is_numeric_dtype(summary[c]) and c not in results.axes]
        raise PlotError(f"metric {metric!r}: not a result column (choose from {', '.join(numeric)})")
    return metric_at_epoch(summary, results.curves, metric, epoch) if epoch is not None else summary


def phase_axes(results: Results, x: Optional[str] = None, y: Optional[str] = None) -> tuple[Optional[str], Optional[str]]:
    """The phase diagram's axes: period on x and amplitude on y unless others are asked for."""
    swept = group_axes(results.axes)
    for axis in (x, y):
        if axis is not None and axis not in swept:
            raise PlotError(f"{axis!r} is not a swept axis of {results.name} (its axes: {', '.join(swept) or 'none'})")
    x = x or ("period" if "period" in swept and y != "period" else next((a for a in swept if a != y), None))
    y = y or ("amplitude" if "amplitude" in swept and x != "amplitude" else next((a for a in swept if a != x), None))
    return x, y


def can_gain(results: Results) -> bool:
    return "amplitude" in results.axes and 1.0 in [float(a) for a in results.axes["amplitude"]]


def phase_table(source: Source, metric: str = "val_accuracy", epoch: Optional[int] = None, gain: bool = False) -> pd.DataFrame:
    """reduce_seeds over the full grid; with gain, of the per-seed gain over A = 1 at equal axes,
    with each cell's paired test (significance_table: ci_low, ci_high, p_value, p_adjusted,
    significant, n_paired, test, correction)."""
    results = as_results(source)
    summary = trials_with(results, metric, epoch)
    if gain:
        if not can_gain(results):
            raise PlotError(f"{results.name}: a gain needs an amplitude axis that includes A = 1")
        reduced = reduce_seeds(gain_over_baseline(summary, metric, results.axes), f"{metric}_gain", results.axes, results.cells)
        tested = significance_table(summary, metric, results.axes).rename(columns={"n": "n_paired"})
        by = group_axes(results.axes)
        return reduced.merge(tested.drop(columns=["mean", "std"]), on=by, how="left") if by else pd.concat([reduced, tested.drop(columns=["mean", "std"])], axis=1)
    return reduce_seeds(summary, metric, results.axes, results.cells)


def phase_diagram(
    source: Source, metric: str = "val_accuracy", x: Optional[str] = None, y: Optional[str] = None,
    epoch: Optional[int] = None, gain: bool = False,
) -> Figure:
    results = as_results(source)
    x, y = phase_axes(results, x, y)
    if not (x and y):
        raise PlotError(f"{results.name}: a phase diagram needs two swept axes besides seed")
    label = metric_label(metric, epoch)
    table = phase_table(results, metric, epoch, gain)
    if gain:
        tested = table["correction"].iloc[0] if len(table) else "no cells"
        return figures.phase_diagram(table, x, y, f"{results.name}: {label} minus A = 1 (paired by seed)\n"
                                     f"outlined, p*: gain ≠ 0 (paired t-test; p adjusted by {tested}; * below 0.05)",
                                     f"gain in {metric}", fmt="+.3f", cmap="RdBu", center=0.0)
    return figures.phase_diagram(table, x, y, f"{results.name}: {label} (mean ± std over seeds)", label)


def subgrid_axes(sub) -> tuple[Optional[str], Optional[str], dict]:
    """(x, y, axes to reduce over) of a sub-grid: its axes with several values besides seed; x is
    the one named like a period, y the other."""
    varied = [a for a, values in sub["axes"].items() if a != SEED and len(values) > 1]
    if len(varied) != 2:
        return None, None, {}
    x = next((a for a in varied if "period" in a), varied[0])
    y = next(a for a in varied if a != x)
    return x, y, {a: sub["axes"][a] for a in (x, y, SEED) if a in sub["axes"]}


def side_by_side_tables(source: Source, metric: str = "val_accuracy", epoch: Optional[int] = None) -> list[tuple[str, pd.DataFrame, str, str]]:
    """[(title, reduced table, x, y)] for every sub-grid of a list-of-mappings grid."""
    results = as_results(source)
    summary = trials_with(results, metric, epoch)
    panels = []
    for index, sub in enumerate(results.subgrids):
        x, y, axes = subgrid_axes(sub)
        if x:
            table = reduce_seeds(summary[summary["trial_id"].isin(sub["trial_ids"])], metric, axes)
            panels.append((f"sub-grid {index + 1}: {y} against {x}", table, x, y))
    if not panels:
        raise PlotError(f"{results.name}: no sub-grid with two swept axes to draw")
    return panels


def side_by_side(source: Source, metric: str = "val_accuracy", epoch: Optional[int] = None, tables=None) -> Figure:
    """The phase diagrams of a grid's sub-grids side by side, on one colour scale (e.g. the
    dynamical loss's (T, A) beside a cyclical learning rate's (period, ratio)). `tables`:
    side_by_side_tables' result, when already at hand."""
    results = as_results(source)
    label = metric_label(metric, epoch)
    tables = tables or side_by_side_tables(results, metric, epoch)
    return figures.side_by_side(tables, f"{results.name}: {label} (mean ± std over seeds)", label)


def std_band(source: Source, metric: str = "val_accuracy", epoch: Optional[int] = None, x: str = "amplitude") -> Figure:
    """The metric against x (amplitude), one line with its ±1 std band per value of the other axes."""
    results = as_results(source)
    if x not in results.axes:
        raise PlotError(f"{results.name}: {x!r} is not a swept axis")
    label = metric_label(metric, epoch)
    hue = [a for a in group_axes(results.axes) if a != x]
    return figures.std_band(phase_table(results, metric, epoch), x, hue, f"{results.name}: {label}, mean ± 1 std over seeds", label)


def curve_axes(results: Results) -> tuple[Optional[str], Optional[str]]:
    """(hue, facet) of the learning curves: amplitude as colour, the next axis as panels."""
    swept = group_axes(results.axes)
    hue = "amplitude" if "amplitude" in swept else next(iter(swept), None)
    return hue, next((a for a in swept if a != hue), None)


def curve_table(source: Source, metric: str = "val_accuracy") -> pd.DataFrame:
    results = as_results(source)
    hue, facet = curve_axes(results)
    return curve_bands(results.curves, results.summary, {a: v for a, v in results.axes.items() if a in (hue, facet, SEED)}, metric)


def stop_epoch(results: Results) -> Optional[float]:
    """The stop_oscillation_epoch the trials share, if they share one."""
    stops = {json.loads(config)["loss"].get("stop_oscillation_epoch") for config in results.summary["config"]}
    return stops.pop() if len(stops) == 1 and None not in stops else None


def learning_curves(source: Source, metric: str = "val_accuracy") -> Figure:
    results = as_results(source)
    hue, facet = curve_axes(results)
    return figures.learning_curves(curve_table(results, metric), metric, hue, facet, stop_epoch(results),
                                   f"{results.name}: {metric} over training (mean ± 1 std over seeds)")


def best_trial(results: Results, metric: str = "val_accuracy") -> Optional[str]:
    completed = results.summary[results.summary["status"] == "completed"]
    return None if completed.empty else completed.sort_values(metric, ascending=False)["trial_id"].iloc[0]


def one_trial(results: Results, trial_id: Optional[str]) -> figures.TrialView:
    """What the trajectory figures draw of one trial (default: the best): its trace
    (DIR/traces/, `tiltsweep trace`) where it has one, else its curve, and its oscillation."""
    trial_id = trial_id or best_trial(results)
    if trial_id is None or trial_id not in set(results.summary["trial_id"]):
        raise PlotError(f"{results.name}: no trial {trial_id!r} with a curve")
    row = results.summary[results.summary["trial_id"] == trial_id].iloc[0]  # the first of the cells it stands for
    config = json.loads(row["config"])
    steps_per_epoch = max(1, int(row["steps"]) // max(1, int(row["epochs"])))
    loss = config["loss"]
    period = LossConfig(**loss).period_in_steps(steps_per_epoch)
    stop = loss.get("stop_oscillation_epoch")
    where = ", ".join(f"{a} = {figures.value_text(row[a])}" for a in results.axes if a in row.index)
    trace = results.trace(trial_id)
    curve = trace if trace is not None else results.curves[results.curves["trial_id"] == trial_id]
    oscillation = figures.Oscillation(num_classes(config), float(loss["amplitude"]), float(period),
                                      None if stop is None else stop * steps_per_epoch, loss.get("shape", "triangle"))
    source = "trace" if trace is not None else "curve"
    return figures.TrialView(trial_id, curve, oscillation, f"{results.name}: trial {trial_id} ({where})", source)


def trajectory(source: Source, trial_id: Optional[str] = None) -> Figure:
    """Gamma_i(t), F(t), F(t) - F(t-1) and accuracy of one trial (default: the best)."""
    return figures.trajectory(one_trial(as_results(source), trial_id))


def has_hessian(results: Results, trial_id: Optional[str] = None) -> bool:
    """Whether the sweep (or that trial's trace or curve) has top Hessian eigenvalues."""
    curve = results.curves if trial_id is None else one_trial(results, trial_id).curve
    return "hessian_eig_1" in curve and curve["hessian_eig_1"].notna().any()


def instabilities(source: Source, trial_id: Optional[str] = None, jump: float = 0.1) -> dict:
    """instability_threshold of one trial's top Hessian eigenvalue (default: the best trial)."""
    measured = one_trial(as_results(source), trial_id).curve.dropna(subset=["hessian_eig_1"]).sort_values("step")
    return instability_threshold(measured["step"], measured["hessian_eig_1"], jump)


def hessian_trajectory(source: Source, trial_id: Optional[str] = None, jump: float = 0.1) -> Figure:
    """The supplementary's Fig. 1 for one trial measured with training.hessian_every."""
    results = as_results(source)
    if not has_hessian(results):
        raise PlotError(f"{results.name}: no Hessian eigenvalues recorded (set training.hessian_every)")
    found = instabilities(results, trial_id, jump)
    return figures.hessian_trajectory(one_trial(results, trial_id), found, f"instabilities: |change of top eigenvalue| > {jump}")
