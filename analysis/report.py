"""`tiltsweep plot DIR`: every figure of a results directory, into the destination the store gives
figures (DIR/figures/), with an index.html that shows them beside the reduced tables; each
figure's table is also written beside it as <figure>.csv. Built from the notebook API
(analysis.plots), for the chosen metric (final `val_accuracy` by default, any summary column, or
its value at `--epoch`):

- side_by_side_<metric>, side_by_side_train_accuracy: for a grid of several sub-grids, one phase
  diagram per sub-grid side by side on one colour scale (instead of the figures below but the
  trajectories);
- phase_<metric>: the seed-averaged metric over x and y (period and amplitude by default);
- phase_train_accuracy: the same for training accuracy;
- phase_<metric>_gain: the gain over the A = 1 row at the same T, paired by seed, each cell's
  paired t-test (95% interval, p-values Holm-adjusted over the diagram's cells) in its table and
  the significant cells outlined;
- band_<metric>: the metric against amplitude with a ±1 std band, one line per other axis value;
- curves_val_accuracy: validation accuracy against epoch per group, with bands;
- trajectory_<trial>: Gamma_i(t), F(t), F(t) - F(t-1) and accuracy of the best trial and of
  every traced one (`tiltsweep trace`; a trace replaces the curve where there is one);
- hessian_<trial>: with training.hessian_every, the supplementary's Fig. 1 for the same trials.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Optional

import pandas as pd

from tiltsweep.analysis import figures, interactive, plots
from tiltsweep.analysis.load import Results, load_results
from tiltsweep.analysis.plots import PlotError, metric_label

FORMATS = ("png", "pdf", "svg")
TABLE_ROWS_SHOWN = 100  # longer tables (curves, traces) are linked from index.html, not shown


@dataclass
class Drawn:
    caption: str
    files: list[str]  # file names, beside index.html
    table: Optional[pd.DataFrame] = None


def check_formats(formats) -> list[str]:
    formats = list(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise PlotError(f"--format {','.join(bad) or '(none)'}: choose from {', '.join(FORMATS)}")
    return formats


def build_report(
    directory, metric: str = "val_accuracy", x: Optional[str] = None, y: Optional[str] = None,
    formats=("png",), epoch: Optional[int] = None,
) -> list[str]:
    """Draw every figure of a results directory; returns where they went (index.html last)."""
    formats = check_formats(formats)
    results = load_results(directory)
    plots.trials_with(results, metric, epoch)  # refuses an unknown metric or an empty sweep up front
    x, y = plots.phase_axes(results, x, y)
    label = metric_label(metric, epoch)
    drawn: list[Drawn] = []

    def add(name: str, caption: str, figure, table):
        drawn.append(Drawn(caption, save_figure(results, name, figure, formats, table), table))

    several_subgrids = len(results.subgrids) > 1  # then one side-by-side figure replaces the grid-wide ones
    if several_subgrids:
        for name in dict.fromkeys([metric, "train_accuracy"]):
            at = epoch if name == metric else None
            tables = plots.side_by_side_tables(results, name, at)
            add(f"side_by_side_{name}", f"{metric_label(name, at)}, one panel per sub-grid, one colour scale",
                plots.side_by_side(results, name, at, tables), pd.concat([t.assign(panel=title) for title, t, _, _ in tables], ignore_index=True))
    elif x and y:
        add(f"phase_{metric}", f"{label}: mean ± std over seeds",
            plots.phase_diagram(results, metric, x, y, epoch), plots.phase_table(results, metric, epoch))
        if metric != "train_accuracy":
            add("phase_train_accuracy", "final train_accuracy: mean ± std over seeds",
                plots.phase_diagram(results, "train_accuracy", x, y), plots.phase_table(results, "train_accuracy"))
        if plots.can_gain(results):
            add(f"phase_{metric}_gain", f"gain of {label} over A = 1 at the same other axes, paired by seed",
                plots.phase_diagram(results, metric, x, y, epoch, gain=True), plots.phase_table(results, metric, epoch, gain=True))
    if "amplitude" in results.axes and not several_subgrids:
        add(f"band_{metric}", f"{label} against amplitude: mean and ±1 std band over seeds", plots.std_band(results, metric, epoch),
            plots.phase_table(results, metric, epoch))
    has_curves = len(results.curves) and "val_accuracy" in results.curves
    if has_curves and not several_subgrids:
        add("curves_val_accuracy", "validation accuracy against epoch: mean and ±1 std band over seeds", plots.learning_curves(results),
            plots.curve_table(results))
    best = plots.best_trial(results, metric) if has_curves else None
    for trial_id in dict.fromkeys([best, *results.traced] if best else results.traced):
        which = "the best trial" if trial_id == best else "a traced trial"
        for name, caption, figure, table in trial_figures(results, trial_id):
            add(name, f"{which} ({trial_id}): {caption}", figure, table)
    index = write_index(results, drawn, label, metric, x, y)
    return [results.store.figure_shown(name) for item in drawn for name in item.files] + [index]


def trial_figures(results: Results, trial_id: str):
    """(name, caption, figure, table) of one trial's trajectory, and of its Hessian where measured."""
    view = plots.one_trial(results, trial_id)
    dense = " (its trace)" if view.source == "trace" else ""
    yield f"trajectory_{trial_id}", f"weights, loss and accuracy over steps{dense}", plots.trajectory(results, trial_id), view.curve
    if plots.has_hessian(results, trial_id):
        found = plots.instabilities(results, trial_id)
        table = pd.DataFrame({"instability starts (step)": found["starts"], "ends (step)": found["ends"]})
        yield (f"hessian_{trial_id}", f"top Hessian eigenvalues{dense}; instability threshold {found['threshold']:.4g}",
               plots.hessian_trajectory(results, trial_id), table)


def save_figure(results: Results, name: str, figure, formats=("png",), table: Optional[pd.DataFrame] = None) -> list[str]:
    """The figure in each format, and the table it draws beside it as <name>.csv; returns their file names."""
    files = [f"{name}.{fmt}" for fmt in formats]
    for file_name, fmt in zip(files, formats):
        results.store.write_figure(file_name, figures.save(figure, fmt))
    if table is not None:
        files.append(f"{name}.csv")
        results.store.write_figure(files[-1], table.to_csv(index=False).encode())
    return files


def draw_trial(directory, trial_id: str) -> list[str]:
    """One trial's figures (trial_figures), as PNG; returns where they went."""
    results = load_results(directory)
    return [results.store.figure_shown(file_name) for name, _, figure, table in trial_figures(results, trial_id)
            for file_name in save_figure(results, name, figure, table=table)]


INDEX = "index.html"


def write_index(results: Results, drawn: list[Drawn], label: str, metric: str = "val_accuracy",
                x: Optional[str] = None, y: Optional[str] = None) -> str:
    """index.html: the interactive report (analysis.interactive), then the figures for papers."""
    page = interactive.report_page(results, metric, x, y, static_html=static_section(results, drawn, label))
    return results.store.write_figure(INDEX, page.encode())


def write_live_index(directory, metric: str = "val_accuracy", x: Optional[str] = None, y: Optional[str] = None, live: bool = True) -> str:
    """index.html while the sweep runs: the interactive report alone, reloading itself while `live`."""
    results = load_results(directory)
    return results.store.write_figure(INDEX, interactive.report_page(results, metric, x, y, live=live).encode())


def static_section(results: Results, drawn: list[Drawn], label: str) -> str:
    """The seaborn figures and their tables, as HTML."""
    counts = results.trials["status"].value_counts().to_dict()
    parts = [
        "<details><summary>Figures for papers (PNG, PDF, SVG) and their tables (click to open)</summary>",
        "<p>" + ", ".join(f"{n} {html.escape(str(s))}" for s, n in sorted(counts.items())) + f" trials; metric: {html.escape(label)}. "
        "Means over completed seeds; std with ddof = 1; diverged and failed seeds are counted, not averaged.</p>",
    ]
    for item in drawn:
        image = next((name for name in item.files if name.endswith((".png", ".svg"))), item.files[0])
        parts.append(f"<h2>{html.escape(item.caption)}</h2>")
        parts.append(f"<a href='{image}'><img src='{image}'></a>" if not image.endswith(".pdf")
                     else f"<p><a href='{image}'>{image}</a></p>")
        if item.table is not None:
            csv = next(name for name in item.files if name.endswith(".csv"))
            parts.append(f"<p>its table: <a href='{csv}'>{csv}</a> ({len(item.table)} rows)</p>")
            if len(item.table) <= TABLE_ROWS_SHOWN:
                parts.append(item.table.to_html(index=False, float_format=lambda v: f"{v:.4f}", na_rep="–"))
    unfinished = results.trials[results.trials["status"] != "completed"]
    if len(unfinished):
        parts.append("<h2>Trials that did not complete</h2>")
        parts.append(unfinished[["trial_id", "status", *[a for a in results.axes if a in unfinished], "error"]].to_html(index=False))
    parts.append("</details>")
    return "\n".join(parts)
